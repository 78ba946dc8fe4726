"""The source edge: every call of an opened source, and every batch it streams, inside one translation boundary.

:func:`cdc_sync.sources.open_source` returns a :class:`TranslatedSource` around the engine's source, so a driver or
OS error never leaves a source as itself (see :mod:`cdc_sync.translate`).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from cdc_sync.errors import CdcSyncError
from cdc_sync.key_digest import KeyDigest
from cdc_sync.sources.base import RowFilter, Source, SourceSnapshot
from cdc_sync.translate import Boundary
from cdc_sync.types import TableSchema

if TYPE_CHECKING:
    from cdc_sync.sources.postgres_log import LogChange, LogStatus, PostgresLog
    from cdc_sync.sources.publication import PublishedTable, SourceFacts

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

    def replication_slot_wal(self, slot: str) -> tuple[int | None, str | None] | None:
        with self._boundary.translating("reading the replication slot's retained WAL"):
            return self.inner.replication_slot_wal(slot)

    def close(self) -> None:
        with self._boundary.translating("closing the connection"):
            self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # an engine's own attributes, outside the contract


class TranslatedLog:
    """A PostgreSQL source's log side (:class:`cdc_sync.sources.postgres_log.PostgresLog`) whose calls, and the
    messages it streams, are inside the source's boundary."""

    def __init__(self, inner: PostgresLog, boundary: Boundary) -> None:
        self.inner = inner
        self.names = inner.names
        self._boundary = boundary

    def status(self) -> LogStatus:
        with self._boundary.translating("reading the replication slot's status"):
            return self.inner.status()

    def facts(self, tables: Sequence[PublishedTable]) -> SourceFacts:
        with self._boundary.translating("checking whether the source allows log capture"):
            return self.inner.facts(tables)

    def refusal(self, tables: Sequence[PublishedTable]) -> str | None:
        with self._boundary.translating("checking whether the source allows log capture"):
            return self.inner.refusal(tables)

    def setup(self, tables: Sequence[PublishedTable], slot_wait_seconds: float | None = None) -> list[str]:
        with self._boundary.translating("setting up the publication and replication slot"):
            return self.inner.setup(tables, slot_wait_seconds)

    def drop(self) -> list[str]:
        with self._boundary.translating("dropping the replication slot and publication"):
            return self.inner.drop()

    def current_lsn(self) -> int:
        with self._boundary.translating("reading the current WAL position"):
            return self.inner.current_lsn()

    def peek(self, upto_lsn: int | None, upto_changes: int | None = None) -> Iterator[LogChange]:
        # The boundary is entered once per chunk of messages, not per message: a burst is tens of thousands.
        chunks = self._boundary.iterate("reading the replication slot",
                                        _chunks(self.inner.peek(upto_lsn, upto_changes), PEEK_CHUNK))
        for chunk in chunks:
            yield from chunk

    def advance(self, lsn: int) -> int:
        with self._boundary.translating("advancing the replication slot"):
            return self.inner.advance(lsn)

    def close(self) -> None:
        with self._boundary.translating("closing the log connection"):
            self.inner.close()

    def __enter__(self) -> TranslatedLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


PEEK_CHUNK = 1000  # messages decoded per entry into the translation boundary


def _chunks(items: Iterator[Any], size: int) -> Generator[list[Any], None, None]:
    """``items`` in lists of ``size``; closing this closes ``items`` (a peek's cursor)."""
    try:
        while chunk := list(islice(items, size)):
            yield chunk
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
