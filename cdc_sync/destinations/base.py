"""The I/O half of a warehouse: a connection, transactions, bulk staging and the lock. SQL comes from the dialect."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
from sqlalchemy.engine import URL

from cdc_sync.destinations.dialect import ColumnSpec, Dialect, Statement


class Destination(ABC):
    """One connection to a warehouse. All writes of one table's cycle happen inside one transaction."""

    dialect: Dialect

    def __init__(self, url: URL, options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.options = dict(options or {})

    @abstractmethod
    def execute(self, statement: Statement) -> int:
        """Run one statement; return the number of rows it affected (``-1`` if the driver cannot tell)."""

    @abstractmethod
    def query(self, statement: Statement) -> list[tuple[Any, ...]]:
        """Run one statement and return all its rows (only for small results: state, counts, metadata)."""

    @abstractmethod
    def begin(self) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def rollback(self) -> None: ...

    @abstractmethod
    def load(self, staging: str, columns: Sequence[ColumnSpec], batches: Iterable[pa.RecordBatch]) -> int:
        """Bulk-append Arrow batches to a staging table created with ``columns``; return the row count."""

    @abstractmethod
    def try_lock(self, schema: str) -> bool:
        """Take the exclusive cycle lock on ``schema``; False when another cycle holds it."""

    @abstractmethod
    def unlock(self, schema: str) -> None: ...

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
