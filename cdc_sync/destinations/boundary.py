"""The destination edge: every call of an opened warehouse inside one translation boundary.

:func:`cdc_sync.destinations.open_destination` returns a :class:`TranslatedDestination` around the engine's
destination, so a driver, OS or AWS error never leaves a warehouse as itself (see :mod:`cdc_sync.translate`).
Transient failures become :class:`~cdc_sync.errors.TransientDestinationError`, which the cycle retries.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from cdc_sync.destinations.base import Destination
from cdc_sync.destinations.dialect import ColumnSpec, Statement
from cdc_sync.translate import Boundary


def statement_operation(statement: Statement) -> str:
    """``running MERGE``, ``running CREATE TABLE``: the statement's verb, never its values."""
    words = statement.sql.split(None, 2)
    verb = " ".join(words[:2] if words and words[0].upper() in {"CREATE", "ALTER", "DROP"} else words[:1])
    return f"running {verb.upper() or 'a statement'}"


def lock_subject(schema: str, table: str | None) -> str:
    """``schema s`` or ``table s.t``: what a lock covers, for messages."""
    return f"schema {schema}" if table is None else f"table {schema}.{table}"


class TranslatedDestination(Destination):
    """A warehouse whose every call is inside its boundary."""

    def __init__(self, inner: Destination, boundary: Boundary) -> None:
        self.inner = inner
        self.url = inner.url
        self.options = inner.options
        self.dialect = inner.dialect
        self._boundary = boundary

    @property  # type: ignore[override]
    def supports_concurrent_tables(self) -> bool:  # set per connection by some engines (DuckDB in memory)
        return self.inner.supports_concurrent_tables

    def execute(self, statement: Statement) -> int:
        with self._boundary.translating(statement_operation(statement)):
            return self.inner.execute(statement)

    def query(self, statement: Statement) -> list[tuple[Any, ...]]:
        with self._boundary.translating(statement_operation(statement)):
            return self.inner.query(statement)

    def share_with_concurrent_tables(self, appends_only: bool = False) -> None:
        with self._boundary.translating("preparing to sync tables side by side"):
            self.inner.share_with_concurrent_tables(appends_only)

    def begin(self) -> None:
        with self._boundary.translating("beginning a transaction"):
            self.inner.begin()

    def commit(self) -> None:
        with self._boundary.translating("committing"):
            self.inner.commit()

    def rollback(self) -> None:
        with self._boundary.translating("rolling back"):
            self.inner.rollback()

    def load(self, staging: str, columns: Sequence[ColumnSpec], batches: Iterable[pa.RecordBatch]) -> int:
        with self._boundary.translating(f"loading rows into {staging}"):
            return self.inner.load(staging, columns, batches)

    def append(self, schema: str, table: str, staging: str, columns: Sequence[ColumnSpec],
               batches: Iterable[pa.RecordBatch], synced_at: Any, chunk_rows: int = 250_000) -> int:
        with self._boundary.translating(f"loading rows into {table}"):
            return self.inner.append(schema, table, staging, columns, batches, synced_at, chunk_rows)

    def stream(self, statement: Statement, schema: pa.Schema, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        return self._boundary.iterate(statement_operation(statement),
                                      self.inner.stream(statement, schema, batch_rows))

    def try_lock(self, schema: str, table: str | None = None) -> bool:
        with self._boundary.translating(f"taking the lock of {lock_subject(schema, table)}"):
            return self.inner.try_lock(schema, table)

    def unlock(self, schema: str, table: str | None = None) -> None:
        with self._boundary.translating(f"releasing the lock of {lock_subject(schema, table)}"):
            self.inner.unlock(schema, table)

    def try_share_schema(self, schema: str) -> bool:
        with self._boundary.translating(f"taking the shared lock of schema {schema}"):
            return self.inner.try_share_schema(schema)

    def unshare_schema(self, schema: str) -> None:
        with self._boundary.translating(f"releasing the shared lock of schema {schema}"):
            self.inner.unshare_schema(schema)

    def use_schema(self, schema: str) -> None:
        with self._boundary.translating(f"entering schema {schema}"):
            self.inner.use_schema(schema)

    def close(self) -> None:
        with self._boundary.translating("closing the connection"):
            self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # an engine's own attributes, outside the contract
