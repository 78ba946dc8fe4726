"""The I/O half of a warehouse: a connection, transactions, bulk staging and the lock. SQL comes from the dialect."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from cdc_sync.destinations.dialect import ColumnSpec, Dialect, Statement
from cdc_sync.urls import URL


class Destination(ABC):
    """One connection to a warehouse. All writes of one table's cycle happen inside one transaction."""

    dialect: Dialect
    # Whether more connections like this one may sync other tables of the same schema at the same time. Set only
    # where that was run here (a DuckDB file in one process, PostgreSQL); a warehouse reached only through an
    # emulator keeps one table at a time.
    supports_concurrent_tables: bool = False

    def __init__(self, url: URL, options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.options = dict(options or {})

    @abstractmethod
    def execute(self, statement: Statement) -> int:
        """Run one statement; return the number of rows it affected (``-1`` if the driver cannot tell)."""

    @abstractmethod
    def query(self, statement: Statement) -> list[tuple[Any, ...]]:
        """Run one statement and return all its rows (only for small results: state, counts, metadata)."""

    def share_with_concurrent_tables(self, appends_only: bool = False) -> None:
        """Called before this connection syncs tables while other connections sync others of the same schema
        (a hook: most warehouses need nothing). ``appends_only``: every table of the cycle is a first load into an
        empty mirror, so none of them merges."""
        return None

    @abstractmethod
    def begin(self) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def rollback(self) -> None: ...

    @abstractmethod
    def load(self, staging: str, columns: Sequence[ColumnSpec], batches: Iterable[pa.RecordBatch]) -> int:
        """Bulk-append Arrow batches to a staging table created with ``columns``; return the row count."""

    def append(self, schema: str, table: str, staging: str, columns: Sequence[ColumnSpec],
               batches: Iterable[pa.RecordBatch], synced_at: Any, chunk_rows: int = 250_000) -> int:
        """Bulk-insert rows into a mirror table (a first load, or a keyless table after it was emptied).

        The generic path stages ``chunk_rows`` at a time and copies them over; destinations that can write a
        table directly from Arrow override this.
        """
        from cdc_sync.transform import take_rows

        remaining = iter(batches)
        inserted = 0
        insert = self.dialect.insert_from_staging(schema, table, staging, [c.name for c in columns], synced_at)
        while True:
            loaded = self.load(staging, columns, take_rows(remaining, chunk_rows))
            if loaded:
                self.execute(insert)
                inserted += loaded
            if loaded < chunk_rows:
                return inserted
            self.execute(self.dialect.empty_table(staging))

    def stream(self, statement: Statement, schema: pa.Schema, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """A query's rows as Arrow batches of ``schema``. This generic form fetches the whole result first;
        destinations that can stream override it, so that memory stays bounded however large the table."""
        rows = self.query(statement)
        for start in range(0, len(rows), batch_rows):
            yield rows_to_batch(rows[start:start + batch_rows], schema)

    @abstractmethod
    def try_lock(self, schema: str, table: str | None = None) -> bool:
        """Take an exclusive lock without waiting; False when another cycle holds it.

        ``table=None`` is the schema lock, held only around work on the whole schema (creating it, migrating the
        state tables, claiming the source). A table's lock is held while a cycle syncs (or repairs) that table,
        so cycles of disjoint tables run at the same time and two cycles never write one table together. The two
        kinds are independent: holding a table's lock does not keep the schema lock from being taken."""

    @abstractmethod
    def unlock(self, schema: str, table: str | None = None) -> None: ...

    def try_share_schema(self, schema: str) -> bool:
        """Hold ``schema`` for a whole cycle in a mode other cycles of this version share, and that keeps out a
        cdc_sync from before per-table locks (which held the schema lock for its whole cycle): False while such a
        cycle runs. A hook: only PostgreSQL can hold a lock in shared mode; elsewhere it holds nothing."""
        return True

    def unshare_schema(self, schema: str) -> None:
        return None

    def use_schema(self, schema: str) -> None:
        """Called once ``schema`` exists, before this connection does any table work in it (a hook: Snowflake
        stages files per table of the current schema; most warehouses need nothing)."""
        return None

    @abstractmethod
    def close(self) -> None: ...

    def scalar(self, statement: Statement) -> Any:
        rows = self.query(statement)
        return rows[0][0] if rows else None

    def ensure_schema(self, schema: str) -> None:
        if not self.scalar(self.dialect.schema_exists(schema)):
            self.execute(self.dialect.create_schema(schema))

    def __enter__(self) -> Destination:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rows_to_batch(rows: Sequence[Sequence[Any]], schema: pa.Schema) -> pa.RecordBatch:
    """Driver rows as one Arrow batch of ``schema`` (bytes-like values as bytes, JSON given as text)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = []
    for field, values in zip(schema, columns, strict=True):
        if pa.types.is_binary(field.type):
            values = tuple(None if v is None else bytes(v) for v in values)
        arrays.append(pa.array(values, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
