"""An embedded DuckDB file: the zero-setup default. Arrow batches are inserted without leaving C++."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from cdc_sync.destinations.base import Destination
from cdc_sync.destinations.dialect import SYNCED_AT, ColumnSpec, Dialect, Statement
from cdc_sync.errors import ConfigError, CycleAlreadyRunningError, DestinationError
from cdc_sync.types import LogicalType
from cdc_sync.urls import URL

BATCH_RELATION = "_cdc_batch"
# DuckDB's buffer pool keeps written blocks until the limit forces them out, so a process's memory follows the
# limit. A streamed first load needs almost none: a small limit keeps its peak flat whatever the table size (344 MiB
# for 3M task instances). Joins (MERGE, delete reconciliation) need headroom: a MERGE of 20,000 rows into a
# 1M-row mirror ran out of memory at 128 MB.
APPEND_MEMORY_LIMIT = "128MB"
JOIN_MEMORY_LIMIT = "1GB"
# A streamed load reads its Arrow stream from Python (the batches pass the read's counters and hooks), one batch at
# a time under the GIL, so a second DuckDB thread finds almost nothing to do; on one thread the load of the 1M
# task instances took 0.5-0.6 s less CPU (bench/README.md). Joins get every thread back.
APPEND_THREADS = 1


class DuckDBDialect(Dialect):
    name = "duckdb"
    placeholder = "?"
    max_identifier_length = 255
    TYPE_NAMES = {
        **Dialect.TYPE_NAMES,
        LogicalType.DOUBLE: "DOUBLE",
        LogicalType.TEXT: "VARCHAR",
        LogicalType.JSON: "JSON",
        LogicalType.BYTES: "BLOB",
        LogicalType.TIMESTAMP_TZ: "TIMESTAMPTZ",
    }
    REPORTED_TYPES = {LogicalType.TIMESTAMP_TZ: "TIMESTAMP WITH TIME ZONE"}
    KEY_TEXT_TYPE = "VARCHAR"
    HEX_TO_INTEGER = "CAST('0x' || {} AS UBIGINT)"

    def insert_relation(self, staging: str, relation: str, columns: Sequence[ColumnSpec]) -> Statement:
        names = self.column_list([c.name for c in columns])
        return Statement(f"INSERT INTO {self.quote(staging)} ({names}) SELECT {names} FROM {self.quote(relation)}")

    def session_setup(self) -> Statement:
        return Statement("SET TimeZone = 'UTC'")

    # ---- row digests of Arrow streams (cdc-sync verify), computed in an in-process DuckDB ----------------------
    def _hashes(self, key: Sequence[str], columns: Sequence[str]) -> str:
        """The bucket (a bound modulus) and the row hash; DuckDB's hash is the same for the same Arrow values."""
        return f"hash({self.column_list(key)}) % ? AS bucket, hash({self.column_list(columns)}) AS row_hash"

    def bucket_digests(self, relation: str, key: Sequence[str], columns: Sequence[str], buckets: int) -> Statement:
        """Per bucket of the key's hash: the row count and the sum of the rows' hashes (order does not matter)."""
        return Statement(
            f"SELECT bucket, count(*), sum(row_hash) FROM (SELECT {self._hashes(key, columns)} "
            f"FROM {self.quote(relation)}) AS hashed GROUP BY bucket",
            (buckets,),
        )

    def rows_in_buckets(self, relation: str, key: Sequence[str], columns: Sequence[str], buckets: int,
                        chosen: Sequence[int]) -> Statement:
        """Every column of the rows in the ``chosen`` buckets, then their row hash."""
        return Statement(
            f"SELECT * EXCLUDE (bucket) FROM (SELECT {self.column_list(columns)}, "
            f"{self._hashes(key, columns)} FROM {self.quote(relation)}) AS hashed "
            "WHERE list_contains(?, bucket)",
            (buckets, list(chosen)),
        )

    def memory_limit(self, limit: str) -> Statement:
        # SET takes no bound parameter; the value is one of this module's constants, never user input.
        return Statement(f"SET memory_limit = '{limit}'")

    def threads(self, count: int | None) -> Statement:
        """DuckDB's worker threads (a constant of this module, never user input); None: its default again."""
        return Statement("RESET threads" if count is None else f"SET threads = {int(count)}")

    def append_relation(self, schema: str, table: str, relation: str, columns: Sequence[ColumnSpec],
                        synced_at: Any) -> Statement:
        names = self.column_list([c.name for c in columns])
        return Statement(
            f"INSERT INTO {self.table(schema, table)} ({names}, {self.quote(SYNCED_AT)}) "
            f"SELECT {names}, ? FROM {self.quote(relation)}",
            (synced_at,),
        )


def arrow_reader(result: Any, batch_rows: int) -> pa.RecordBatchReader:
    """A DuckDB result as a stream of Arrow batches (DuckDB 2 renamed ``fetch_record_batch`` ``to_arrow_reader``)."""
    if hasattr(result, "to_arrow_reader"):
        return result.to_arrow_reader(batch_rows)
    return result.fetch_record_batch(batch_rows)


def arrow_table(result: Any) -> pa.Table:
    """A DuckDB result as one Arrow table (``fetch_arrow_table`` before DuckDB 2, ``to_arrow_table`` since)."""
    return result.to_arrow_table() if hasattr(result, "to_arrow_table") else result.fetch_arrow_table()


def prepare_file(path: Path, must_exist: bool) -> None:
    """Refuse a path that cannot hold the mirror before DuckDB touches it; create its folder unless ``must_exist``."""
    if must_exist and not path.is_file():
        raise ConfigError(f"There is no DuckDB mirror at {path}: check the path in --destination (status reads an "
                          "existing mirror and creates nothing).")
    if path.is_dir():
        raise ConfigError(f"The DuckDB destination {path} is a folder: name a file, e.g. duckdb:///{path}/mirror.duckdb.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"The folder of the DuckDB file {path} cannot be created ({error.strerror}): choose a "
                          "writable path in --destination.") from None


_locks_guard = threading.Lock()
_held_locks: set[tuple[str, str, str | None]] = set()


class DuckDBDestination(Destination):
    dialect = DuckDBDialect()

    def __init__(self, url: URL, options: Mapping[str, Any] | None = None, *, must_exist: bool = False) -> None:
        """``must_exist``: open only a file that is there (``status`` reads a mirror, it never creates one)."""
        import duckdb

        super().__init__(url, options)
        database = url.database or ":memory:"
        self.path = database if database == ":memory:" else str(Path(database).expanduser().resolve())
        if self.path != ":memory:":
            prepare_file(Path(self.path), must_exist)
        try:
            self._connection = duckdb.connect(self.path)
        except duckdb.IOException as error:
            if "lock" in str(error).lower():
                raise CycleAlreadyRunningError(
                    f"The DuckDB file {self.path} is open in another process (a cycle is running there): "
                    "wait for it to finish, then try again."
                ) from None
            raise DestinationError(f"Cannot open the DuckDB file {self.path}: {error}") from None
        self._connection.execute(self.dialect.session_setup().sql)
        # Connections of one process to one file share one database instance, with a transaction per connection;
        # a second connection to ":memory:" would open another, empty database.
        self.supports_concurrent_tables = self.path != ":memory:"
        self._memory_limit = ""
        self._memory_limit_pinned = False
        self._set_memory_limit(JOIN_MEMORY_LIMIT)

    def share_with_concurrent_tables(self, appends_only: bool = False) -> None:
        # The buffer pool is the database instance's, shared by every connection: while other connections MERGE,
        # no load may shrink it under them. When every table only appends (a first load), the small pool of a
        # streamed load stays for all of them, so the large table's load keeps its flat memory.
        self._set_memory_limit(APPEND_MEMORY_LIMIT if appends_only else JOIN_MEMORY_LIMIT)
        self._memory_limit_pinned = True

    def _set_memory_limit(self, limit: str) -> None:
        """Change DuckDB's buffer pool only when it differs: most tables never leave the join limit."""
        if self._memory_limit_pinned:
            return
        if limit != self._memory_limit:
            self._run(self.dialect.memory_limit(limit))
            if APPEND_MEMORY_LIMIT in (limit, self._memory_limit):  # a load begins or ends
                self._run(self.dialect.threads(APPEND_THREADS if limit == APPEND_MEMORY_LIMIT else None))
            self._memory_limit = limit

    def _run(self, statement: Statement) -> Any:
        return self._connection.execute(statement.sql, list(statement.params) or None)

    def execute(self, statement: Statement) -> int:
        cursor = self._run(statement)
        try:
            row = cursor.fetchone()
        except Exception:  # DDL returns no result set
            return -1
        return int(row[0]) if row and isinstance(row[0], int) else -1

    def query(self, statement: Statement) -> list[tuple[Any, ...]]:
        return self._run(statement).fetchall()

    def begin(self) -> None:
        self._set_memory_limit(JOIN_MEMORY_LIMIT)
        self._connection.begin()

    def commit(self) -> None:
        self._connection.commit()

    def rollback(self) -> None:
        self._connection.rollback()

    def _insert_stream(self, statement: Statement, batches: Iterable[pa.RecordBatch]) -> int:
        """One INSERT reading the whole batch stream: DuckDB then writes full row groups to the file as they fill
        (memory stays flat however large the load), instead of holding a transaction's appends in memory."""
        import duckdb

        iterator = iter(batches)
        first = next(iterator, None)
        if first is None:
            return 0
        rows = 0
        failure: list[BaseException] = []

        def counted() -> Iterator[pa.RecordBatch]:
            nonlocal rows
            try:
                for batch in itertools.chain([first], iterator):
                    rows += batch.num_rows
                    yield batch
            except BaseException as error:  # re-raised below as itself, not as a DuckDB error
                failure.append(error)
                raise

        self._connection.register(BATCH_RELATION, pa.RecordBatchReader.from_batches(first.schema, counted()))
        try:
            self._run(statement)
        except duckdb.Error:
            if failure:
                raise failure[0] from None
            raise
        finally:
            # In an aborted transaction DuckDB refuses even this; the next register() replaces the view anyway.
            with contextlib.suppress(duckdb.Error):
                self._connection.unregister(BATCH_RELATION)
        return rows

    def load(self, staging: str, columns: Sequence[ColumnSpec], batches: Iterable[pa.RecordBatch]) -> int:
        return self._insert_stream(self.dialect.insert_relation(staging, BATCH_RELATION, columns), batches)

    def append(self, schema: str, table: str, staging: str, columns: Sequence[ColumnSpec],
               batches: Iterable[pa.RecordBatch], synced_at: Any, chunk_rows: int = 0) -> int:
        """Arrow batches straight into the mirror table: no staging copy, and a small buffer pool meanwhile."""
        import duckdb

        self._set_memory_limit(APPEND_MEMORY_LIMIT)
        try:
            return self._insert_stream(
                self.dialect.append_relation(schema, table, BATCH_RELATION, columns, synced_at), batches
            )
        finally:
            # Refused inside an aborted transaction; begin() restores it for the next table then.
            with contextlib.suppress(duckdb.Error):
                self._set_memory_limit(JOIN_MEMORY_LIMIT)

    def stream(self, statement: Statement, schema: pa.Schema, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        reader = arrow_reader(self._run(statement), batch_rows)
        for batch in reader:
            yield pa.RecordBatch.from_arrays([column.cast(field.type) for column, field in zip(
                batch.columns, schema, strict=True)], schema=schema)

    def try_lock(self, schema: str, table: str | None = None) -> bool:
        """DuckDB takes one writing process per file: other processes are kept out by its own file lock (opening
        the file fails, see :func:`cdc_sync.cycle_locks.open_destination_waiting`). These locks guard threads
        of this process, per schema and per table like the other warehouses'."""
        with _locks_guard:
            key = (self.path, schema, table)
            if key in _held_locks:
                return False
            _held_locks.add(key)
            return True

    def unlock(self, schema: str, table: str | None = None) -> None:
        with _locks_guard:
            _held_locks.discard((self.path, schema, table))

    def close(self) -> None:
        self._connection.close()
