"""Large PostgreSQL reads through Arrow's ADBC driver: ``COPY … (FORMAT BINARY)`` decoded into Arrow batches in
C++, with no CSV text, no parser and no hex decoding in between.

The horizon, the catalog and small or filtered reads stay on psycopg (:mod:`cdc_sync.sources.postgres`): a second
connection and a snapshot import cost more than they save on a few rows. A read goes through here when it takes a
whole table whose heap is large (a first load, a full re-read, a resync, the keys of a big table); the ADBC
connection is opened at the first such read and kept for the source's later snapshots.

Each snapshot that reads here joins the horizon's transaction: the psycopg connection exports its snapshot
(``pg_export_snapshot()``) and the ADBC connection opens a REPEATABLE READ transaction on it (``SET TRANSACTION
SNAPSHOT``), so both see exactly the same rows.

Why no bound parameter in these reads: with a parameter, the driver buffers the whole result before returning the
first batch (a gigabyte for two million task instances). Only unfiltered reads come here, so none is needed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from cdc_sync.arrow_kernels import cast
from cdc_sync.errors import SourceError
from cdc_sync.sources.csv_stream import read_ahead
from cdc_sync.types import ARROW_TYPES, Column
from cdc_sync.urls import URL, redact, scrub

# Types whose binary COPY the driver decodes into the Arrow type the CSV path produces (after a lossless widening
# of integers). Every other type is selected as ``::text``, as on the CSV path, and so arrives as the same text:
# uuid, numeric (exact), json/jsonb, interval, arrays, enums. float4 and oid are among the others: a float4 widened
# in Arrow gains digits its text form never had (0.1 → 0.10000000149011612), and the driver reads oid as a signed
# 32-bit integer.
BINARY_NATIVE_TYPES = {"bool", "int2", "int4", "int8", "float8", "text", "varchar", "bpchar", "name", "bytea",
                       "timestamptz", "timestamp", "date"}
# A whole-table read of a heap at least this large goes through ADBC. Measured on the benchmark's Airflow 3 schema
# (bench/README.md): below it, opening the connection and importing the snapshot cost more than the faster decode.
ARROW_READ_MIN_BYTES = 16 << 20
# Bytes of Arrow data per batch the driver hands over: memory stays a few batches, whatever the table size.
BATCH_SIZE_HINT_BYTES = 4 << 20
READ_AHEAD_BATCHES = 2
# pg_export_snapshot()'s output: hex words and dashes. SET TRANSACTION SNAPSHOT takes no bound parameter, so the
# identifier (produced by the server, never by a user) is checked against this form before it meets SQL text.
SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+")
JOIN_SNAPSHOT_SQL = ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "SET TRANSACTION SNAPSHOT '{}'")


def settings_sql(count: int) -> str:
    """One statement that sets ``count`` session settings, names and values bound as parameters."""
    return "SELECT " + ", ".join(f"set_config(${2 * i + 1}, ${2 * i + 2}, false)" for i in range(count))


def select_expression(quoted: str, source_type: str) -> str:
    return quoted if source_type.split("(", 1)[0] in BINARY_NATIVE_TYPES else f"{quoted}::text"


class ArrowReader:
    """One ADBC connection of a PostgreSQL source, used only inside snapshots exported by the source's own
    connection."""

    def __init__(self, url: URL, conninfo: str, settings: dict[str, str]) -> None:
        """``settings``: the session settings of the source's own connection (time zone, date style, search path),
        so that text forms render alike on both."""
        self._url = url
        self._conninfo = conninfo
        self._settings = settings
        self._connection: Any = None
        self._in_snapshot = False

    def _connect(self) -> Any:
        if self._connection is not None:
            return self._connection
        import adbc_driver_manager
        import adbc_driver_postgresql.dbapi as adbc

        try:
            connection = adbc.connect(self._conninfo, autocommit=True)
        except adbc_driver_manager.Error as error:
            # libpq's message may quote the connection string: only the redacted URL is named.
            reason = scrub(" ".join(str(error).split()), self._url) or type(error).__name__
            raise SourceError(f"Cannot open the Arrow (ADBC) connection to the source {redact(self._url)}: "
                              f"{reason}. Check host, port, database and credentials.") from None
        try:
            with connection.cursor() as cursor:
                cursor.execute(settings_sql(len(self._settings)),
                               tuple(part for setting in self._settings.items() for part in setting))
                cursor.fetchall()
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def join(self, snapshot_id: str) -> None:
        """Open a transaction on the snapshot ``snapshot_id`` (exported by a transaction still open)."""
        if not SNAPSHOT_ID.fullmatch(snapshot_id):
            raise SourceError(f"PostgreSQL exported a snapshot id of an unexpected form ({snapshot_id[:40]!r}).")
        with self._connect().cursor() as cursor:
            begin, set_snapshot = JOIN_SNAPSHOT_SQL
            cursor.execute(begin)
            self._in_snapshot = True
            cursor.execute(set_snapshot.format(snapshot_id))

    def leave(self) -> None:
        """End the snapshot's transaction (read-only: nothing to commit). A connection that cannot end it (lost,
        or broken by the failure that ends the snapshot) is dropped instead, and the next read opens another:
        raising here would hide the failure being handled."""
        if not self._in_snapshot:
            return
        import adbc_driver_manager

        self._in_snapshot = False
        try:
            with self._connection.cursor() as cursor:
                cursor.execute("ROLLBACK")
        except adbc_driver_manager.Error:
            connection, self._connection = self._connection, None
            with contextlib.suppress(adbc_driver_manager.Error, RuntimeError):
                connection.close()

    def batches(self, sql: str, columns: tuple[Column, ...]) -> Iterator[pa.RecordBatch]:
        """The rows of ``sql`` (one column per ``columns``, selected by :func:`select_expression`), typed as the CSV
        path types them. A read given up early is cancelled on the server: otherwise ending the transaction would
        first drain the rest of the table."""
        target = pa.schema([pa.field(column.name, ARROW_TYPES[column.logical_type]) for column in columns])

        def decoded(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
            for batch in reader:
                if batch.num_rows:
                    yield retyped(batch, target)

        cursor = self._connection.cursor()
        cursor.adbc_statement.set_options(
            **{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_SIZE_HINT_BYTES)})
        finished = False
        try:
            cursor.execute(sql)
            # The driver decodes the next batch on a thread of its own while the caller writes the last one.
            yield from read_ahead(decoded(cursor.fetch_record_batch()), depth=READ_AHEAD_BATCHES)
            finished = True
        finally:
            if not finished:
                cursor.adbc_cancel()
            cursor.close()

    def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()


def retyped(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """A driver batch in the CSV path's types: integers widened to int64, text forms (float4, oid) parsed."""
    arrays = [array if array.type == field.type else cast(array, field.type)
              for array, field in zip(batch.columns, target, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=target)
