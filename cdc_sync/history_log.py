"""History in the log mode: every committed version of a table's rows that the log holds since the table's stored
position becomes a row of its history table (:mod:`cdc_sync.history`), with ``_cdc_op`` (insert, update,
delete), ``_cdc_lsn`` (the change's own WAL position, as PostgreSQL writes an LSN), ``_cdc_commit_ts`` and
``_cdc_valid_from`` (its transaction's commit time).

Written before the changes are applied to the mirror, in the same transaction, because:

* a value the log did not send (an unchanged TOASTed column) is the previous version's: an earlier version of the
  same row within the segment, else the row's open version in the history (an earlier segment's), else the
  mirror's, which still holds it then;
* a DELETE carries only the replica identity (the primary key), so its ``delete`` version copies the values of
  the row's open version (or of its last version within the changes).

Versions the history already holds are skipped (:meth:`~cdc_sync.destinations.history_sql.HistorySql.drop_recorded`):
a replay after a crash (same key and LSN), and the changes a table's first copy already saw (committed before the
copy's version began). A TRUNCATE adds a ``delete`` version for every open version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

from cdc_sync import faults
from cdc_sync.destinations.base import Destination
from cdc_sync.destinations.dialect import ColumnSpec
from cdc_sync.destinations.history_sql import DELETE, HISTORY_COLUMNS, HistorySql
from cdc_sync.history import history_sql
from cdc_sync.log_changes import typed_from_text
from cdc_sync.log_spool import LoggedChange
from cdc_sync.plan import TablePlan
from cdc_sync.sources.pgoutput import UNCHANGED_TOAST, Value, format_lsn
from cdc_sync.types import ARROW_TYPES, LogicalType

Transform = Callable[[Iterable[pa.RecordBatch]], Iterable[pa.RecordBatch]]
# Changes held in memory before they are recorded (a segment ends only at a transaction's end, so that versions of
# one commit time are never split: a later segment's version would look already recorded).
HISTORY_SEGMENT_CHANGES = 20_000
Version = dict[str, Any]  # a row's values, and its META_NAMES


def record_log_versions(destination: Destination, schema: str, plan: TablePlan, changes: Iterable[LoggedChange],
                        identity: Sequence[str], synced_at: datetime, transform: Transform) -> None:
    """Record ``changes`` (one table's, in LSN order, uncollapsed) in its history table, in segments of about
    :data:`HISTORY_SEGMENT_CHANGES` whole transactions (one transaction larger than that is one segment)."""
    sql = history_sql(destination, schema, plan)
    segment: list[LoggedChange] = []
    for change in changes:
        if change.op != "truncate":
            if len(segment) >= HISTORY_SEGMENT_CHANGES and change.end_lsn != segment[-1].end_lsn:
                _record_segment(destination, sql, plan, segment, tuple(identity), synced_at, transform)
                segment = []
            segment.append(change)
            continue
        _record_segment(destination, sql, plan, segment, tuple(identity), synced_at, transform)
        segment = []
        committed_at = change.committed_at
        destination.execute(sql.delete_all_open(plan.column_names, format_lsn(change.lsn), committed_at, synced_at))
        destination.execute(sql.close_all_open(committed_at))
    _record_segment(destination, sql, plan, segment, tuple(identity), synced_at, transform)
    faults.point("history")


def _record_segment(destination: Destination, sql: HistorySql, plan: TablePlan, changes: list[LoggedChange],
                    identity: tuple[str, ...], synced_at: datetime, transform: Transform) -> None:
    versions, deletions = _versions(plan, changes, identity, synced_at)
    dialect = destination.dialect
    if deletions:  # of rows whose last version is already in the history: they come first
        staging = dialect.staging_name(plan.name, "history_keys")
        columns = [*(ColumnSpec(name, plan.table.column(name).logical_type) for name in identity), *HISTORY_COLUMNS]
        _stage(destination, staging, columns, plan, identity, deletions, (), transform)
        destination.execute(sql.drop_recorded(staging, identity))
        destination.execute(sql.insert_deleted(staging, plan.column_names, identity))
        destination.execute(sql.close_before(staging, identity))
        destination.execute(dialect.drop_staging(staging))
    if versions:
        staging = dialect.staging_name(plan.name, "history")
        unsent = [name for name in plan.column_names if any(version.get(name) is UNCHANGED_TOAST
                                                             for version in versions)]
        flags = {name: f"_cdc_unsent_{index}" for index, name in enumerate(unsent)}
        columns = [*plan.columns, *HISTORY_COLUMNS, *(ColumnSpec(flag, LogicalType.BOOLEAN) for flag in flags.values())]
        _stage(destination, staging, columns, plan, plan.column_names, versions, flags, transform)
        destination.execute(sql.drop_recorded(staging))
        for name, flag in flags.items():
            destination.execute(sql.fill_unchanged(staging, name, flag))
        destination.execute(sql.close_before(staging))
        destination.execute(sql.insert_staged(staging, plan.column_names))
        destination.execute(dialect.drop_staging(staging))


def _versions(plan: TablePlan, changes: Iterable[LoggedChange], identity: tuple[str, ...],
              synced_at: datetime) -> tuple[list[Version], list[Version]]:
    """The versions to record, chained (each valid until the next of its row), and the deletions of rows with no
    version among them (known by their replica identity only)."""
    key = plan.merge_key
    chains: dict[tuple[Any, ...], list[Version]] = {}
    key_of_identity: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    deletions: list[Version] = []
    versions: list[Version] = []
    for change in changes:
        if not change.op:  # the old identity of an UPDATE that changed it: the UPDATE is the version
            continue
        row_identity = tuple(change.values.get(name) for name in identity)
        meta = {"_cdc_op": change.op, "_cdc_lsn": format_lsn(change.lsn), "_cdc_commit_ts": change.committed_at,
                "_cdc_valid_from": change.committed_at, "_cdc_valid_to": None, "_cdc_synced_at": synced_at}
        if change.op == DELETE:
            merge_key = key_of_identity.pop(row_identity, None)
            if merge_key is None:
                deletions.append({**change.values, **meta, "_cdc_valid_to": change.committed_at})
                continue
            chain = chains[merge_key]
            values = {name: chain[-1].get(name) for name in plan.column_names}
            meta["_cdc_valid_to"] = change.committed_at
        else:
            values = {name: change.values[name] for name in plan.column_names if name in change.values}
            merge_key = tuple(values.get(name) for name in key)
            chain = chains.setdefault(merge_key, [])
            if chain and chain[-1]["_cdc_op"] != DELETE:
                values = {name: chain[-1][name] if value is UNCHANGED_TOAST else value
                          for name, value in values.items()}
            key_of_identity[row_identity] = merge_key
        if chain and chain[-1]["_cdc_valid_to"] is None:
            chain[-1]["_cdc_valid_to"] = change.committed_at
        version = {**values, **meta}
        chain.append(version)
        versions.append(version)
    return versions, deletions


def _stage(destination: Destination, staging: str, columns: Sequence[ColumnSpec], plan: TablePlan,
           value_columns: Sequence[str], rows: list[Version], flags: dict[str, str] | Sequence[Any],
           transform: Transform) -> None:
    """Load ``rows`` into a new staging table: their values parsed from the log's text forms as the mirror's
    are, hashed columns hashed, and the history columns (and the flags of unsent values) beside them."""
    dialect = destination.dialect
    texts = [{name: None if row.get(name) is UNCHANGED_TOAST else row.get(name) for name in value_columns}
             for row in rows]
    values = pa.Table.from_batches(list(transform(_text_batches(plan, tuple(value_columns), texts))))
    for column in HISTORY_COLUMNS:
        values = values.append_column(column.name, pa.array([row[column.name] for row in rows],
                                                            ARROW_TYPES[column.logical_type]))
    for name, flag in dict(flags).items():
        values = values.append_column(flag, pa.array([row.get(name) is UNCHANGED_TOAST for row in rows], pa.bool_()))
    destination.execute(dialect.drop_staging(staging))
    destination.execute(dialect.create_staging(staging, columns))
    destination.load(staging, columns, values.to_batches())


def _text_batches(plan: TablePlan, columns: tuple[str, ...], rows: list[dict[str, Value]]) -> list[pa.RecordBatch]:
    """Rows of the log's text values as Arrow batches of the plan's types, parsed as the mirror's changes are."""
    return typed_from_text(plan, pa.table({name: pa.array([row.get(name) for row in rows], pa.string())
                                           for name in columns}))
