"""An embedded DuckDB file: the zero-setup default. Arrow batches are inserted without leaving C++."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
from sqlalchemy.engine import URL

from cdc_sync.destinations.base import Destination
from cdc_sync.destinations.dialect import ColumnSpec, Dialect, Statement
from cdc_sync.errors import CycleAlreadyRunningError, DestinationError, TerminalDestinationError
from cdc_sync.types import LogicalType

BATCH_RELATION = "_cdc_batch"


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

    def insert_relation(self, staging: str, relation: str, columns: Sequence[ColumnSpec]) -> Statement:
        names = self.column_list([c.name for c in columns])
        return Statement(f"INSERT INTO {self.quote(staging)} ({names}) SELECT {names} FROM {self.quote(relation)}")


_locks_guard = threading.Lock()
_held_locks: set[tuple[str, str]] = set()


class DuckDBDestination(Destination):
    dialect = DuckDBDialect()
    _in_transaction: ClassVar[bool] = False

    def __init__(self, url: URL, options: Mapping[str, Any] | None = None) -> None:
        import duckdb

        super().__init__(url, options)
        database = url.database or ":memory:"
        self.path = database if database == ":memory:" else str(Path(database).expanduser().resolve())
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connection = duckdb.connect(self.path)
        except duckdb.IOException as error:
            if "lock" in str(error).lower():
                raise CycleAlreadyRunningError(
                    f"The DuckDB file {self.path} is open in another process (a cycle is running there): "
                    "wait for it to finish, then try again."
                ) from None
            raise DestinationError(f"Cannot open the DuckDB file {self.path}: {error}") from None
        self._connection.execute("SET TimeZone = 'UTC'")

    def _run(self, statement: Statement) -> Any:
        import duckdb

        try:
            return self._connection.execute(statement.sql, list(statement.params) or None)
        except duckdb.Error as error:
            raise TerminalDestinationError(f"DuckDB rejected a statement: {error}") from error

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
        self._connection.begin()

    def commit(self) -> None:
        self._connection.commit()

    def rollback(self) -> None:
        self._connection.rollback()

    def load(self, staging: str, columns: Sequence[ColumnSpec], batches: Iterable[pa.RecordBatch]) -> int:
        rows = 0
        insert = self.dialect.insert_relation(staging, BATCH_RELATION, columns)
        for batch in batches:
            self._connection.register(BATCH_RELATION, pa.Table.from_batches([batch]))
            try:
                self._run(insert)
            finally:
                self._connection.unregister(BATCH_RELATION)
            rows += batch.num_rows
        return rows

    def try_lock(self, schema: str) -> bool:
        # Other processes are kept out by DuckDB's own file lock; this guards threads of this process.
        with _locks_guard:
            key = (self.path, schema)
            if key in _held_locks:
                return False
            _held_locks.add(key)
            return True

    def unlock(self, schema: str) -> None:
        with _locks_guard:
            _held_locks.discard((self.path, schema))

    def close(self) -> None:
        self._connection.close()
