"""``cdc-sync verify``: prove the mirror exact on demand, and repair it through the normal MERGE path.

The habit of data-diff and pt-table-checksum: digest the table in chunks on both sides, compare the chunk digests,
and fetch rows only from the chunks that differ. Chunks here are buckets of the merge key's hash, not key ranges:
the source and the warehouse order text keys by different collations, so a key range would not hold the same rows
on both sides, while a key's hash does. Each side's rows are streamed once (what the mirror should hold: the
source's copied columns, hashed columns as digests; the mirror's live rows) into an in-process DuckDB, which
computes one hash per row over values of identical Arrow types, so both sides are rendered by one engine. Memory is
bounded by the number of buckets in the first pass and by ``chunk_rows`` times the buckets fetched at once in the
second.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from cdc_sync.config import SyncConfig
from cdc_sync.deletes import key_specs
from cdc_sync.destinations import Destination, dialect_for, open_destination
from cdc_sync.destinations.duckdb import DuckDBDialect, arrow_table
from cdc_sync.digests import digest_for
from cdc_sync.errors import ConfigError, CycleAlreadyRunningError
from cdc_sync.ownership import require_airflow_source
from cdc_sync.plan import TablePlan, plan_table, select_tables, validate_column_options
from cdc_sync.sources import SourceSnapshot, open_source
from cdc_sync.state import StateStore, utc_now
from cdc_sync.transform import hash_columns
from cdc_sync.types import LogicalType, arrow_schema

DEFAULT_CHUNK_ROWS = 100_000
# Differing buckets whose rows are fetched in one round: at most this many chunks of rows in memory per side.
BUCKETS_PER_ROUND = 8
SAMPLE_KEYS = 10
STREAM = "_cdc_verify_rows"
HASHER = DuckDBDialect()


@dataclass
class TableVerification:
    """What verify found in one table. Keys are tuples in merge-key order; only a sample of them is kept."""

    table: str
    source_rows: int = 0
    mirror_rows: int = 0
    chunks: int = 0
    differing_chunks: int = 0
    missing: int = 0
    extra: int = 0
    differing: int = 0
    sample_missing: list[tuple[Any, ...]] = field(default_factory=list)
    sample_extra: list[tuple[Any, ...]] = field(default_factory=list)
    sample_differing: list[tuple[Any, ...]] = field(default_factory=list)
    repaired: bool = False
    skipped: str | None = None

    @property
    def exact(self) -> bool:
        return not (self.missing or self.extra or self.differing)

    def summary(self) -> dict[str, Any]:
        return {key: value for key, value in vars(self).items()} | {"exact": self.exact}


@dataclass
class VerifyReport:
    schema: str
    tables: list[TableVerification] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """True when every table matched, or every difference found was repaired."""
        return all(table.exact or table.repaired for table in self.tables)

    def summary(self) -> dict[str, Any]:
        return {"schema": self.schema, "exact": self.exact, "tables": [t.summary() for t in self.tables]}


def verify_mirror(config: SyncConfig, *, only: Iterable[str] | None = None, fix: bool = False,
                  chunk_rows: int = DEFAULT_CHUNK_ROWS) -> VerifyReport:
    """Compare every selected table with its mirror; with ``fix``, repair each table in one transaction."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows={chunk_rows!r} must be a positive whole number, e.g. 100000.")
    dialect_for(config.destination_url).validate_schema_name(config.schema)
    report = VerifyReport(config.schema)
    with open_source(config.source_url) as source:
        available = source.list_tables()
        require_airflow_source(source, available)
        tables, _ = select_tables(config, available)
        wanted = list(only or ())
        unknown = [name for name in wanted if name not in tables]
        if unknown:
            raise ConfigError(f"--table {', '.join(unknown)} is not among the synced tables: name one of "
                              f"{', '.join(tables)}.")
        schemas = source.describe_tables(wanted or tables)
        validate_column_options(config, schemas)
        plans = [plan_table(schema, config, row_versions=source.has_row_versions) for schema in schemas.values()]
        with open_destination(config.destination_url, config.destination_options) as destination:
            # Only mirrors a committed cycle recorded: never a table cdc_sync did not create (cdc_sync.ownership).
            state = StateStore(destination, config.schema)
            watermarks = state.watermarks() if state.has_state() else {}
            hex_digest = digest_for(config.hash_key).hex_digest
            if fix and watermarks:
                # Held until the connection closes, as a cycle holds it: a cdc_sync from before per-table locks
                # (which locks the whole schema for its cycle) never repairs or syncs alongside.
                if not destination.try_share_schema(config.schema):
                    raise CycleAlreadyRunningError(
                        f"A cdc_sync older than per-table locks is syncing schema {config.schema!r}: run verify "
                        "--fix once it has finished, and upgrade every worker that syncs this schema."
                    )
                destination.use_schema(config.schema)
            for plan in plans:
                mark = watermarks.get(plan.name)
                if mark is None or mark.last_success_at is None:
                    report.tables.append(TableVerification(plan.name, skipped="not mirrored yet"))
                    continue
                # A repair writes the table: it holds the table's lock, as a cycle does.
                if fix and not destination.try_lock(config.schema, plan.name):
                    raise CycleAlreadyRunningError(
                        f"A cycle is syncing {config.schema}.{plan.name}: run verify --fix once it has finished."
                    )
                try:
                    with source.snapshot() as snapshot:
                        report.tables.append(_verify_table(destination, config.schema, plan, snapshot, fix,
                                                           chunk_rows, hex_digest))
                finally:
                    if fix:
                        destination.unlock(config.schema, plan.name)
    return report


def _verify_table(destination: Destination, schema: str, plan: TablePlan, snapshot: SourceSnapshot, fix: bool,
                  chunk_rows: int, hex_digest: Callable[[bytes], str]) -> TableVerification:
    result = TableVerification(plan.name)
    if not plan.merge_key:
        result.skipped = "no key: the table is replaced as a whole by every cycle"
        return result
    import duckdb

    hasher = duckdb.connect()
    try:
        destination.begin()

        def source_rows() -> Iterator[pa.RecordBatch]:
            return _comparable(hash_columns(snapshot.read_rows(plan.table), plan.hashed_columns, hex_digest), plan)

        def mirror_rows() -> Iterator[pa.RecordBatch]:
            live = destination.dialect.select_live(schema, plan.name, plan.columns)
            return _comparable(destination.stream(live, arrow_schema(plan.table.columns)), plan)

        result.source_rows = snapshot.count_rows(plan.table)
        result.mirror_rows = int(destination.scalar(destination.dialect.count_live(schema, plan.name)))
        buckets = max(1, math.ceil(max(result.source_rows, result.mirror_rows) / chunk_rows))
        result.chunks = buckets
        at_source = _bucket_digests(hasher, source_rows(), plan, buckets)
        in_mirror = _bucket_digests(hasher, mirror_rows(), plan, buckets)
        differing = sorted(b for b in at_source.keys() | in_mirror.keys() if at_source.get(b) != in_mirror.get(b))
        result.differing_chunks = len(differing)
        for start in range(0, len(differing), BUCKETS_PER_ROUND):
            chosen = differing[start:start + BUCKETS_PER_ROUND]
            source_table = _rows_in_buckets(hasher, source_rows(), plan, buckets, chosen)
            mirror_hashes = _hashes_by_key(_rows_in_buckets(hasher, mirror_rows(), plan, buckets, chosen), plan)
            source_hashes = _hashes_by_key(source_table, plan)
            missing = [k for k in source_hashes if k not in mirror_hashes]
            changed = [k for k, h in source_hashes.items() if k in mirror_hashes and mirror_hashes[k] != h]
            extra = [k for k in mirror_hashes if k not in source_hashes] if plan.delete_mode != "ignore" else []
            _tally(result, missing, extra, changed)
            if fix and (missing or changed or extra):
                _repair(destination, schema, plan, source_table, set(missing) | set(changed), extra)
        if fix and not result.exact:
            destination.commit()
            result.repaired = True
        else:
            destination.rollback()
    except BaseException:
        destination.rollback()
        raise
    finally:
        hasher.close()
    return result


def _comparable(batches: Iterable[pa.RecordBatch], plan: TablePlan) -> Iterator[pa.RecordBatch]:
    """Batches in the one form both sides are hashed in: JSON re-serialised with sorted keys (a JSONB mirror
    reorders keys and spacing), every column cast to its logical Arrow type."""
    schema = arrow_schema(plan.table.columns)
    json_columns = {c.name for c in plan.table.columns if c.logical_type is LogicalType.JSON}
    for batch in batches:
        arrays = []
        for column, field_ in zip(batch.columns, schema, strict=True):
            if field_.name in json_columns:
                column = pa.array([_canonical_json(v) for v in column.to_pylist()], pa.string())
            arrays.append(column.cast(field_.type))
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def _canonical_json(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return text


def _register(hasher: Any, batches: Iterator[pa.RecordBatch], plan: TablePlan) -> None:
    hasher.register(STREAM, pa.RecordBatchReader.from_batches(arrow_schema(plan.table.columns), batches))


def _bucket_digests(hasher: Any, batches: Iterator[pa.RecordBatch], plan: TablePlan,
                    buckets: int) -> dict[int, tuple[int, int]]:
    _register(hasher, batches, plan)
    statement = HASHER.bucket_digests(STREAM, plan.merge_key, plan.column_names, buckets)
    rows = hasher.execute(statement.sql, list(statement.params)).fetchall()
    hasher.unregister(STREAM)
    return {bucket: (count, total) for bucket, count, total in rows}


def _rows_in_buckets(hasher: Any, batches: Iterator[pa.RecordBatch], plan: TablePlan, buckets: int,
                     chosen: Sequence[int]) -> pa.Table:
    _register(hasher, batches, plan)
    statement = HASHER.rows_in_buckets(STREAM, plan.merge_key, plan.column_names, buckets, chosen)
    table = arrow_table(hasher.execute(statement.sql, list(statement.params)))
    hasher.unregister(STREAM)
    return table


def _hashes_by_key(table: pa.Table, plan: TablePlan) -> dict[tuple[Any, ...], int]:
    keys = [table.column(name).to_pylist() for name in plan.merge_key]
    return dict(zip(zip(*keys, strict=True), table.column("row_hash").to_pylist(), strict=True))


def _tally(result: TableVerification, missing: list, extra: list, changed: list) -> None:
    for found, count_name, sample in ((missing, "missing", result.sample_missing),
                                      (extra, "extra", result.sample_extra),
                                      (changed, "differing", result.sample_differing)):
        setattr(result, count_name, getattr(result, count_name) + len(found))
        sample.extend(sorted(found, key=repr)[:SAMPLE_KEYS - len(sample)])


def _repair(destination: Destination, schema: str, plan: TablePlan, source_rows: pa.Table,
            upserts: set[tuple[Any, ...]], extra: list[tuple[Any, ...]]) -> None:
    """Stage the source rows of missing and differing keys and MERGE them; mark extra keys by the delete mode."""
    dialect, now = destination.dialect, utc_now()
    if upserts:
        keys = zip(*(source_rows.column(name).to_pylist() for name in plan.merge_key), strict=True)
        mask = pa.array([key in upserts for key in keys], pa.bool_())
        rows = source_rows.filter(mask).select(list(plan.column_names))
        staging = dialect.staging_name(plan.name)
        destination.execute(dialect.drop_staging(staging))
        destination.execute(dialect.create_staging(staging, plan.columns))
        destination.load(staging, plan.columns, rows.to_batches())
        destination.execute(dialect.merge(schema, plan.name, staging, plan.column_names, plan.merge_key, plan.cursor,
                                          plan.nullable_key, now, compare_rows=True))
        destination.execute(dialect.drop_staging(staging))
    if extra:
        key_columns = key_specs(plan)
        names = [column.name for column in key_columns]
        listed = pa.RecordBatch.from_arrays(
            [pa.array(list(values), arrow_schema(plan.table.columns).field(name).type)
             for name, values in zip(names, zip(*extra, strict=True), strict=True)], names=names)
        keys_staging = dialect.staging_name(plan.name, "keys")
        destination.execute(dialect.drop_staging(keys_staging))
        destination.execute(dialect.create_staging(keys_staging, key_columns))
        destination.load(keys_staging, key_columns, [listed])
        if plan.delete_mode == "hard":
            destination.execute(dialect.hard_delete_listed(schema, plan.name, keys_staging, plan.merge_key,
                                                           plan.nullable_key))
        else:
            destination.execute(dialect.soft_delete_listed(schema, plan.name, keys_staging, plan.merge_key,
                                                           plan.nullable_key, now))
        destination.execute(dialect.drop_staging(keys_staging))
