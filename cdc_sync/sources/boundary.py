"""The source edge: every call of an opened source, and every batch it streams, inside one translation boundary.

:func:`cdc_sync.sources.open_source` returns a :class:`TranslatedSource` around the engine's source, so a driver or
OS error never leaves a source as itself (see :mod:`cdc_sync.translate`).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from cdc_sync.errors import CdcSyncError
from cdc_sync.key_digest import KeyDigest
from cdc_sync.sources.base import RowFilter, Source, SourceSnapshot
from cdc_sync.translate import Boundary
from cdc_sync.types import TableSchema

log = logging.getLogger("cdc_sync")


class TranslatedSnapshot(SourceSnapshot):
    """A snapshot whose reads are inside the source's boundary."""

    def __init__(self, inner: SourceSnapshot, boundary: Boundary) -> None:
        self.inner = inner
        self.horizon = inner.horizon
        self._boundary = boundary
        self._streams: list[Generator[pa.RecordBatch, None, None]] = []

    def read_rows(self, table: TableSchema, where: RowFilter | None = None) -> Iterator[pa.RecordBatch]:
        return self._stream(f"reading rows of {table.name}", self.inner.read_rows(table, where))

    def read_keys(self, table: TableSchema, key: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
        return self._stream(f"reading the keys of {table.name}", self.inner.read_keys(table, key))

    def _stream(self, operation: str, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        stream = self._boundary.iterate(operation, batches)
        self._streams.append(stream)
        return stream

    def close_streams(self) -> None:
        """End the reads a failure left half-consumed (a warehouse refused a load mid-stream), so that the snapshot
        can end: an open COPY holds the connection, and ending the transaction under it would wait forever."""
        streams, self._streams = self._streams, []
        for stream in streams:
            try:
                stream.close()
            except CdcSyncError as error:  # the stream was given up; the failure that did so is what matters
                log.warning("A read given up after a failure did not end cleanly: %s", error)

    def count_rows(self, table: TableSchema) -> int:
        with self._boundary.translating(f"counting the rows of {table.name}"):
            return self.inner.count_rows(table)

    def estimate_rows(self, table: TableSchema) -> int | None:
        with self._boundary.translating(f"estimating the rows of {table.name}"):
            return self.inner.estimate_rows(table)

    def key_digest(self, table: TableSchema, key: tuple[str, ...]) -> KeyDigest | None:
        with self._boundary.translating(f"computing the key digest of {table.name}"):
            return self.inner.key_digest(table, key)

    def row_reaches(self, table: TableSchema, key: tuple[str, ...], values: tuple[Any, ...], column: str,
                    value: Any) -> bool:
        with self._boundary.translating(f"checking {table.name} for a reset"):
            return self.inner.row_reaches(table, key, values, column, value)

    def reaches(self, table: TableSchema, column: str, value: Any) -> bool:
        with self._boundary.translating(f"checking {table.name} for a reset"):
            return self.inner.reaches(table, column, value)

    def reads_only_rewritten_rows(self, where: RowFilter | None) -> bool:
        return self.inner.reads_only_rewritten_rows(where)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # an engine's own attributes, outside the contract


class TranslatedSource(Source):
    """A source whose every call is inside its boundary."""

    def __init__(self, inner: Source, boundary: Boundary) -> None:
        self.inner = inner
        self.engine = inner.engine
        self.has_row_versions = inner.has_row_versions
        self.open_writes_hint = inner.open_writes_hint
        self.other_schema_hint = inner.other_schema_hint
        self._boundary = boundary

    def list_tables(self) -> list[str]:
        with self._boundary.translating("listing the tables"):
            return self.inner.list_tables()

    def describe(self, table: str) -> TableSchema:
        with self._boundary.translating(f"reading the catalog of {table}"):
            return self.inner.describe(table)

    def describe_tables(self, tables: list[str]) -> dict[str, TableSchema]:
        with self._boundary.translating("reading the catalog"):
            return self.inner.describe_tables(tables)

    @contextmanager
    def snapshot(self) -> Iterator[SourceSnapshot]:
        # The block's own errors were translated at their edge already; what is left here is the snapshot's
        # opening and ending.
        with self._boundary.translating("opening or ending a read snapshot"), self.inner.snapshot() as snapshot:
            translated = TranslatedSnapshot(snapshot, self._boundary)
            try:
                yield translated
            finally:
                translated.close_streams()

    def identity(self) -> str:
        with self._boundary.translating("reading the database's identity"):
            return self.inner.identity()

    def location(self) -> str:
        with self._boundary.translating("reading the database's location"):
            return self.inner.location()

    def close(self) -> None:
        with self._boundary.translating("closing the connection"):
            self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # an engine's own attributes, outside the contract
