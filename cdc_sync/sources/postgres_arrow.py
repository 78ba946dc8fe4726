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
    connection.

    It speaks to the driver manager's low-level API (database, connection, statement): its DB-API module imports
    ``pyarrow.dataset`` and with it ``pyarrow.compute``, about 90 ms of a first load's critical path that this
    path never uses (see :mod:`cdc_sync.arrow_kernels`)."""

    def __init__(self, url: URL, conninfo: str, settings: dict[str, str]) -> None:
        """``settings``: the session settings of the source's own connection (time zone, date style, search path),
        so that text forms render alike on both."""
        self._url = url
        self._conninfo = conninfo
        self._settings = settings
        self._database: Any = None
        self._connection: Any = None
        self._in_snapshot = False

    def _connect(self) -> Any:
        if self._connection is not None:
            return self._connection
        import adbc_driver_manager
        import adbc_driver_postgresql

        database = connection = None
        try:
            database = adbc_driver_postgresql.connect(self._conninfo)
            connection = adbc_driver_manager.AdbcConnection(database)  # in autocommit mode until join() begins
        except adbc_driver_manager.Error as error:
            _close(connection, database)
            # libpq's message may quote the connection string: only the redacted URL is named.
            reason = scrub(" ".join(str(error).split()), self._url) or type(error).__name__
            raise SourceError(f"Cannot open the Arrow (ADBC) connection to the source {redact(self._url)}: "
                              f"{reason}. Check host, port, database and credentials.") from None
        try:
            if self._settings:
                values = [part for setting in self._settings.items() for part in setting]
                parameters = pa.record_batch([pa.array([value], pa.string()) for value in values],
                                             names=[str(number) for number in range(len(values))])
                fetch_all(connection, settings_sql(len(self._settings)), parameters)
        except BaseException:
            _close(connection, database)
            raise
        self._database, self._connection = database, connection
        return connection

    def join(self, snapshot_id: str) -> None:
        """Open a transaction on the snapshot ``snapshot_id`` (exported by a transaction still open)."""
        if not SNAPSHOT_ID.fullmatch(snapshot_id):
            raise SourceError(f"PostgreSQL exported a snapshot id of an unexpected form ({snapshot_id[:40]!r}).")
        connection = self._connect()
        begin, set_snapshot = JOIN_SNAPSHOT_SQL
        _update(connection, begin)
        self._in_snapshot = True
        _update(connection, set_snapshot.format(snapshot_id))

    def leave(self) -> None:
        """End the snapshot's transaction (read-only: nothing to commit). A connection that cannot end it (lost,
        or broken by the failure that ends the snapshot) is dropped instead, and the next read opens another:
        raising here would hide the failure being handled."""
        if not self._in_snapshot:
            return
        import adbc_driver_manager

        self._in_snapshot = False
        try:
            _update(self._connection, "ROLLBACK")
        except adbc_driver_manager.Error:
            connection, database, self._connection, self._database = self._connection, self._database, None, None
            _close(connection, database)

    def batches(self, sql: str, columns: tuple[Column, ...]) -> Iterator[pa.RecordBatch]:
        """The rows of ``sql`` (one column per ``columns``, selected by :func:`select_expression`), typed as the CSV
        path types them. A read given up early is cancelled on the server: otherwise ending the transaction would
        first drain the rest of the table."""
        import adbc_driver_manager

        target = pa.schema([pa.field(column.name, ARROW_TYPES[column.logical_type]) for column in columns])

        def decoded(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
            for batch in reader:
                if batch.num_rows:
                    yield retyped(batch, target)

        statement = adbc_driver_manager.AdbcStatement(self._connection)
        reader: pa.RecordBatchReader | None = None
        finished = False
        try:
            statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_SIZE_HINT_BYTES)})
            reader = _query(statement, sql)
            # The driver decodes the next batch on a thread of its own while the caller writes the last one.
            yield from read_ahead(decoded(reader), depth=READ_AHEAD_BATCHES)
            finished = True
        finally:
            if not finished:
                with contextlib.suppress(adbc_driver_manager.Error):
                    statement.cancel()
            # The result stream is released before its statement, as the driver requires.
            with contextlib.suppress(adbc_driver_manager.Error, pa.ArrowException):
                if reader is not None:
                    reader.close()
            with contextlib.suppress(adbc_driver_manager.Error):
                statement.close()

    def close(self) -> None:
        if self._connection is not None:
            connection, database, self._connection, self._database = self._connection, self._database, None, None
            connection.close()
            database.close()


def _query(statement: Any, sql: str, parameters: pa.RecordBatch | None = None) -> pa.RecordBatchReader:
    """The result of ``sql`` as a batch reader whose errors are the driver's (with their SQLSTATE), as the DB-API's
    readers are; ``parameters``: one row of bound values (the driver then buffers the whole result, so only small
    results bind any). The reader is closed before ``statement``."""
    from adbc_driver_manager._reader import AdbcRecordBatchReader

    statement.set_sql_query(sql)
    if parameters is not None:
        schema, array = parameters.__arrow_c_array__()
        statement.bind(array, schema)
    handle, _ = statement.execute_query()
    return AdbcRecordBatchReader._import_from_c(handle.address)


def fetch_all(connection: Any, sql: str, parameters: pa.RecordBatch | None = None) -> pa.Table:
    """The whole (small) result of ``sql``, on a statement of its own, closed after."""
    import adbc_driver_manager

    statement = adbc_driver_manager.AdbcStatement(connection)
    try:
        with _query(statement, sql, parameters) as reader:
            return reader.read_all()
    finally:
        statement.close()


def _update(connection: Any, sql: str) -> None:
    """A statement without a result (transaction control)."""
    import adbc_driver_manager

    statement = adbc_driver_manager.AdbcStatement(connection)
    try:
        statement.set_sql_query(sql)
        statement.execute_update()
    finally:
        statement.close()


def _close(connection: Any, database: Any) -> None:
    """Close what was opened, ignoring a connection already lost: this runs while another failure is handled."""
    import adbc_driver_manager

    for handle in (connection, database):
        if handle is not None:
            with contextlib.suppress(adbc_driver_manager.Error, RuntimeError):
                handle.close()


def retyped(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """A driver batch in the CSV path's types: integers widened to int64, text forms (float4, oid) parsed."""
    arrays = [array if array.type == field.type else cast(array, field.type)
              for array, field in zip(batch.columns, target, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=target)
