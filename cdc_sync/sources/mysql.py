"""Airflow on MySQL or MariaDB: introspection from information_schema, the commit horizon from
``information_schema.innodb_trx``, and rows streamed as CSV lines built by the server into Arrow.

This module is the MySQL *source dialect*: the only place that writes SQL for a MySQL/MariaDB source.

Why CSV lines: the pure-Python driver spends most of its time decoding one protocol value at a time. Asking the
server to render each row as one CSV line (``CONCAT_WS``) leaves the driver one value per row, and Arrow's C++ CSV
reader does the typing — several times faster than converting Python tuples, in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from cdc_sync import key_digest
from cdc_sync.errors import ConfigError, SourceError
from cdc_sync.key_digest import KeyDigest
from cdc_sync.sources.base import CursorFilter, Horizon, Source, SourceSnapshot, key_digest_sql, reach_probe_sql
from cdc_sync.sources.csv_stream import csv_batches
from cdc_sync.sources.mysql_connect import connect_args
from cdc_sync.types import Column, LogicalType, TableSchema
from cdc_sync.urls import SOURCE_SCHEMA_OPTION, URL, redact, scrub, source_schema

BATCH_ROWS = 50_000  # rows fetched from the server per round of the unbuffered cursor
PAD_COLUMN = "_cdc_pad"

TYPE_MAP: dict[str, LogicalType] = {
    "tinyint": LogicalType.INTEGER,
    "smallint": LogicalType.INTEGER,
    "mediumint": LogicalType.INTEGER,
    "int": LogicalType.INTEGER,
    "integer": LogicalType.INTEGER,
    "bigint": LogicalType.INTEGER,
    "year": LogicalType.INTEGER,
    "float": LogicalType.DOUBLE,
    "double": LogicalType.DOUBLE,
    "real": LogicalType.DOUBLE,
    "decimal": LogicalType.TEXT,  # exact: carried as its text, never rounded through a float
    "numeric": LogicalType.TEXT,
    "json": LogicalType.JSON,
    "binary": LogicalType.BYTES,
    "varbinary": LogicalType.BYTES,
    "tinyblob": LogicalType.BYTES,
    "blob": LogicalType.BYTES,
    "mediumblob": LogicalType.BYTES,
    "longblob": LogicalType.BYTES,
    "bit": LogicalType.BYTES,
    # TIMESTAMP is an instant, rendered in the session time zone, which is set to UTC. DATETIME is a wall-clock
    # value (Airflow's plain DateTime columns, FAB's local times): the same split as PostgreSQL's two types.
    "timestamp": LogicalType.TIMESTAMP_TZ,
    "datetime": LogicalType.TIMESTAMP,
    "date": LogicalType.DATE,
}
# Everything else (char/varchar/text, enum, set, time, MariaDB's uuid/inet types) is carried as text.

TABLES_SQL = """
SELECT TABLE_NAME FROM information_schema.TABLES
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'
ORDER BY TABLE_NAME
"""
COLUMNS_SQL = """
SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE = 'YES'
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s
ORDER BY ORDINAL_POSITION
"""
# MariaDB stores JSON as LONGTEXT guarded by a column-level CHECK (json_valid(`column`)).
MARIADB_JSON_SQL = """
SELECT CONSTRAINT_NAME FROM information_schema.CHECK_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = %s AND LEVEL = 'Column'
  AND CHECK_CLAUSE = CONCAT('json_valid(`', CONSTRAINT_NAME, '`)')
"""
KEYS_SQL = """
SELECT INDEX_NAME, COLUMN_NAME
FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND NON_UNIQUE = 0
ORDER BY INDEX_NAME <> 'PRIMARY', INDEX_NAME, SEQ_IN_INDEX
"""
# Read before the snapshot opens, in one statement: the time, then the oldest transaction of another session that
# has written (rows modified) or locked rows to write them (Airflow's SELECT … FOR UPDATE before its UPDATEs).
# Pure readers are left out on purpose: they stamp nothing, and counting them would let any long report or idle
# session hold every watermark back. The remaining race — a stamp taken in Python just before a transaction's
# first write reaches the server — is milliseconds wide and covered by the lookback. ``trx_started`` has second
# precision and is truncated, which only makes the horizon earlier (safer). Needs the PROCESS privilege.
HORIZON_SQL = """
SELECT UTC_TIMESTAMP(6),
       (SELECT MIN(trx_started) FROM information_schema.INNODB_TRX
         WHERE trx_mysql_thread_id <> CONNECTION_ID() AND (trx_rows_modified > 0 OR trx_lock_structs > 0))
"""
NOW_SQL = "SELECT UTC_TIMESTAMP(6)"
# INNODB_TRX is read from a cache that InnoDB refreshes only when it is older than 0.1 s, so a transaction that began
# up to 0.1 s before the horizon query may be missing from it (seen here: a writer's open INSERT was invisible to a
# query 0.09 s later, visible 0.12 s later). The horizon's view of writers is therefore taken as of this long before
# the query, with a margin.
INNODB_TRX_LAG = timedelta(seconds=1)
SESSION_SETUP_SQL = "SET time_zone = '+00:00', net_write_timeout = 3600"
# A consistent snapshot is only consistent under REPEATABLE READ, whatever the server's default.
SNAPSHOT_SQL = ("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
# Eight hex digits of an MD5 as an unsigned integer (the key digest, cdc_sync.key_digest).
HEX_TO_INTEGER = "CAST(CONV({}, 16, 10) AS UNSIGNED)"
ACCESS_DENIED_CODES = {1227}  # ER_SPECIFIC_ACCESS_DENIED_ERROR: PROCESS privilege missing


def quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def logical_type(data_type: str, column_type: str) -> LogicalType:
    if data_type == "tinyint" and column_type.startswith("tinyint(1)"):
        return LogicalType.BOOLEAN  # SQLAlchemy's Boolean on MySQL
    return TYPE_MAP.get(data_type, LogicalType.TEXT)


def csv_field(column: Column) -> str:
    """SQL rendering one column as one CSV field: NULL → empty, text quoted, bytes as quoted hex, instants with Z.

    Every field goes through utf8mb4 so that columns of different collations concatenate without an
    "illegal mix of collations" error.
    """
    name = quote(column.name)
    kind = column.logical_type
    if kind is LogicalType.BYTES:
        field = f"CONCAT('\"', HEX({name}), '\"')"
    elif kind in (LogicalType.TEXT, LogicalType.JSON):
        field = f"CONCAT('\"', REPLACE(CONVERT({name} USING utf8mb4), '\"', '\"\"'), '\"')"
    elif kind is LogicalType.BOOLEAN:
        field = f"CONVERT(({name} <> 0) USING utf8mb4)"
    elif kind is LogicalType.TIMESTAMP_TZ:
        field = f"CONCAT(CONVERT({name} USING utf8mb4), 'Z')"
    else:
        field = f"CONVERT({name} USING utf8mb4)"
    return f"IFNULL({field}, '')"


def line_select(table: str, columns: tuple[Column, ...]) -> str:
    """The SELECT rendering each row as one CSV line. A lone column gets an empty second field, because a lone
    NULL would make an empty line, which CSV readers skip."""
    fields = [csv_field(column) for column in columns]
    if len(fields) == 1:
        fields.append("''")
    # As binary, the driver hands the UTF-8 bytes over without decoding them.
    return f"SELECT CAST(CONCAT_WS(',', {', '.join(fields)}) AS BINARY) FROM {quote(table)}"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _bind(value: Any) -> Any:
    """Cursor values in the session's form: instants as naive UTC (the session time zone is UTC)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


class MySQLSnapshot(SourceSnapshot):
    def __init__(self, connection: Any, horizon: Horizon) -> None:
        self._connection = connection
        self.horizon = horizon

    def _stream(self, sql: str, params: tuple[Any, ...], columns: tuple[Column, ...]) -> Iterator[pa.RecordBatch]:
        import pymysql

        padded = columns if len(columns) > 1 else (*columns, Column(PAD_COLUMN, LogicalType.TEXT))
        # Unbuffered: rows stay on the server until fetched, so memory holds one batch at a time.
        cursor = self._connection.cursor(pymysql.cursors.SSCursor)
        try:
            cursor.execute(sql, params or None)  # without parameters, a '%' in a name must stay as it is
            for batch in csv_batches(_lines(cursor), padded, hex_prefix=""):
                yield batch if padded is columns else batch.drop_columns([PAD_COLUMN])
        finally:
            cursor.close()

    def read_rows(self, table: TableSchema, where: CursorFilter | None = None) -> Iterator[pa.RecordBatch]:
        sql = line_select(table.name, table.columns)
        params: tuple[Any, ...] = ()
        if where is not None:
            sql += f" WHERE {quote(where.column)} > %s"
            params = (_bind(where.after),)
        yield from self._stream(sql, params, table.columns)

    def read_keys(self, table: TableSchema, key: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
        columns = tuple(table.column(name) for name in key)
        yield from self._stream(line_select(table.name, columns), (), columns)

    def count_rows(self, table: TableSchema) -> int:
        with self._connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {quote(table.name)}")
            return int(cursor.fetchone()[0])

    def estimate_rows(self, table: TableSchema) -> int | None:
        # InnoDB's sampled row count, the one SHOW TABLE STATUS shows: no scan.
        with self._connection.cursor() as cursor:
            cursor.execute("SELECT table_rows FROM information_schema.tables WHERE table_schema = DATABASE() "
                           "AND table_name = %s", (table.name,))
            row = cursor.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def key_digest(self, table: TableSchema, key: tuple[str, ...]) -> KeyDigest | None:
        if not self.renders_key(table, key):
            return None
        # MySQL's || is OR, so CONCAT joins; every part is utf8mb4, so that columns of any collation mix.
        sql = key_digest_sql(quote, table.name, key, "CONVERT({} USING utf8mb4)", HEX_TO_INTEGER,
                             concatenate=lambda parts: f"CONCAT({', '.join(parts)})")
        with self._connection.cursor() as cursor:
            cursor.execute(sql, key_digest.parameters(len(key)))
            return KeyDigest.from_row(cursor.fetchone())

    def reaches(self, table: TableSchema, column: str, value: Any) -> bool:
        return self._exists(table, (), column, (_bind(value),))

    def row_reaches(self, table: TableSchema, key: tuple[str, ...], values: tuple[Any, ...], column: str,
                    value: Any) -> bool:
        return self._exists(table, key, column, (*values, _bind(value)))

    def _exists(self, table: TableSchema, key: tuple[str, ...], column: str, params: tuple[Any, ...]) -> bool:
        with self._connection.cursor() as cursor:
            cursor.execute(reach_probe_sql(quote, table.name, key, column), params)
            return bool(cursor.fetchone()[0])


def _lines(cursor: Any) -> Iterator[bytes]:
    """The CSV text of the result, one chunk per fetched batch."""
    while rows := cursor.fetchmany(BATCH_ROWS):
        lines = [row[0] for row in rows]
        if None in lines:
            # CONCAT_WS yields NULL (with a warning) when its result exceeds max_allowed_packet.
            raise SourceError(
                "A source row is larger than the server's max_allowed_packet once rendered; raise "
                "max_allowed_packet on the MySQL/MariaDB server (e.g. to 256M) and run the cycle again."
            )
        yield b"\n".join(lines) + b"\n"


class MySQLSource(Source):
    engine = "mysql"
    open_writes_hint = "grant PROCESS to the source user (GRANT PROCESS ON *.* TO 'user'@'host')"
    other_schema_hint = (
        "Name Airflow's database in the source URL (mysql://host:3306/airflow), or add "
        f"?{SOURCE_SCHEMA_OPTION}=NAME (source_schema='NAME' on the Airflow task)."
    )

    def __init__(self, url: URL) -> None:
        import pymysql

        self._url = url
        self._database = source_schema(url) or url.database
        if not self._database:
            raise ConfigError(f"The source URL {redact(url)} names no database: add it, e.g. mysql://host:3306/airflow.")
        try:
            # In init_command, so a reconnect restores them: instants rendered in UTC, and a slow destination
            # must not make the server drop a streaming read.
            self._connection = pymysql.connect(
                **connect_args(url), autocommit=True, init_command=SESSION_SETUP_SQL
            )
            (version,) = self._query_raw("SELECT VERSION()")
            self._is_mariadb = "mariadb" in str(version).lower()
        except pymysql.Error as error:
            raise SourceError(
                f"Cannot connect to the source {redact(url)}: {_reason(error, url)}. Check host, port, database and "
                "credentials."
            ) from None
        self._sees_open_writes = True

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._connection.cursor() as cursor:
            cursor.execute(sql, params or None)
            return list(cursor.fetchall())

    def _reconnect_if_lost(self) -> None:
        """A source kept open across a long cycle may have been dropped by the server (wait_timeout)."""
        import pymysql

        try:
            self._connection.ping(reconnect=False)
        except pymysql.Error:
            self._connection.connect()  # runs init_command again

    def list_tables(self) -> list[str]:
        return [row[0] for row in self._query(TABLES_SQL)]

    def describe(self, table: str) -> TableSchema:
        rows = self._query(COLUMNS_SQL, (table,))
        if not rows:
            raise ConfigError(f"Table {table!r} does not exist in the source {redact(self._url)}.")
        json_columns = {row[0] for row in self._query(MARIADB_JSON_SQL, (table,))} if self._is_mariadb else set()
        columns = tuple(
            Column(
                name=name,
                logical_type=LogicalType.JSON if name in json_columns else logical_type(data_type, column_type),
                nullable=bool(nullable),
                source_type=column_type,
            )
            for name, data_type, column_type, nullable in rows
        )
        keys: dict[str, list[str]] = {}
        for index_name, column_name in self._query(KEYS_SQL, (table,)):
            keys.setdefault(index_name, []).append(column_name)
        primary = tuple(keys.pop("PRIMARY", ()))
        return TableSchema(name=table, columns=columns, primary_key=primary,
                           unique_keys=tuple(tuple(key) for key in keys.values()))

    def _horizon(self) -> Horizon:
        import pymysql

        if self._sees_open_writes:
            try:
                started, oldest = self._query_raw(HORIZON_SQL)
                return Horizon(_utc(started), _utc(oldest) if oldest is not None else None, True,
                               open_writes_seen_until=_utc(started) - INNODB_TRX_LAG)
            except pymysql.Error as error:
                if error.args[0] not in ACCESS_DENIED_CODES:
                    raise
                self._sees_open_writes = False  # no PROCESS privilege: other sessions are invisible
        (started,) = self._query_raw(NOW_SQL)
        return Horizon(_utc(started), None, False)

    def _query_raw(self, sql: str) -> tuple[Any, ...]:
        with self._connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchone() or ()

    @contextmanager
    def snapshot(self) -> Iterator[SourceSnapshot]:
        import pymysql

        self._reconnect_if_lost()
        # The horizon is measured before the snapshot opens: a writer that commits in between is then
        # either visible to the snapshot or was counted as open.
        horizon = self._horizon()
        for statement in SNAPSHOT_SQL:
            self._query_raw(statement)
        if horizon.sees_open_writes:
            # Writers are compared with a moment after the snapshot opened, not with the horizon read before it.
            (taken_by,) = self._query_raw(NOW_SQL)
            horizon = replace(horizon, snapshot_taken_by=_utc(taken_by))
        try:
            yield MySQLSnapshot(self._connection, horizon)
        finally:
            # If the connection is gone, the server has ended the transaction with it.
            with suppress(pymysql.Error):
                self._connection.rollback()

    def identity(self) -> str:
        return f"mysql://{self._url.host or 'localhost'}:{self._url.port or 3306}/{self._database}"

    def close(self) -> None:
        self._connection.close()


def _reason(error: Exception, url: URL) -> str:
    """The server's message without the driver's tuple wrapping, with the URL's secrets hidden."""
    args = getattr(error, "args", ())
    return scrub(str(args[1]) if len(args) > 1 else str(error), url) or type(error).__name__
