"""Airflow on SQLite: introspection from the pragmas, rows read inside one read transaction and typed into Arrow.

This module is the SQLite *source dialect*: the only place that writes SQL for an SQLite source.

SQLite stores Airflow's instants as text (``YYYY-MM-DD HH:MM:SS.ffffff``, naive UTC; rows written through other
paths sometimes carry an offset or a ``T``). Declared ``TIMESTAMP`` columns (Airflow's ``UtcDateTime``) become
UTC instants, ``DATETIME`` columns naive wall-clock times — the same split as PostgreSQL's two types. SQLite
cannot tell whether another connection holds an uncommitted write, so the horizon never claims to see open
writers, and late commits are covered by the replicator's lookback only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from cdc_sync import key_digest
from cdc_sync.arrow_kernels import call, cast
from cdc_sync.errors import ConfigError, SourceError
from cdc_sync.key_digest import KeyDigest
from cdc_sync.sources.base import CursorFilter, Horizon, Source, SourceSnapshot, key_digest_sql, quote
from cdc_sync.types import ARROW_TYPES, Column, LogicalType, TableSchema, arrow_schema
from cdc_sync.urls import SOURCE_SCHEMA_OPTION, URL, redact, source_schema

BATCH_ROWS = 50_000

TABLES_SQL = r"""
SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name
"""
COLUMNS_SQL = 'SELECT name, type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid'
UNIQUE_INDEXES_SQL = "SELECT name, origin FROM pragma_index_list(?) WHERE \"unique\" = 1 AND partial = 0 ORDER BY seq"
INDEX_COLUMNS_SQL = "SELECT name FROM pragma_index_info(?) ORDER BY seqno"
# julianday() reads every text form SQLite knows (offsets, 'T', missing fractions) but only to ~50 µs; the
# filter therefore reaches one second further back and the exact comparison is done on the parsed values.
TIME_FILTER_SQL = "julianday({column}) > julianday(?) - 1.0 / 86400"
SQL_TEXT_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
# SQLite has no MD5 and no hex parsing: the key digest (cdc_sync.key_digest) calls these, registered per connection.
MD5_FUNCTION, HEX_FUNCTION = "MD5", "cdc_hex_integer"


def md5_hex(text: str | None) -> str | None:
    return None if text is None else hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def hex_integer(digits: str | None) -> int | None:
    return None if digits is None else int(digits, 16)

DECLARED_TYPES: tuple[tuple[str, LogicalType], ...] = (
    # Checked in order against the declared type, upper-cased, as SQLite's own affinity rules do.
    ("BOOL", LogicalType.BOOLEAN),
    ("INT", LogicalType.INTEGER),
    ("TIMESTAMP", LogicalType.TIMESTAMP_TZ),  # Airflow's UtcDateTime
    ("DATETIME", LogicalType.TIMESTAMP),
    ("DATE", LogicalType.DATE),
    ("JSON", LogicalType.JSON),
    ("BLOB", LogicalType.BYTES),
    ("BINARY", LogicalType.BYTES),
    ("REAL", LogicalType.DOUBLE),
    ("FLOA", LogicalType.DOUBLE),
    ("DOUB", LogicalType.DOUBLE),
)


def logical_type(declared: str) -> LogicalType:
    """Map a declared type; NUMERIC/DECIMAL and everything textual (CHAR(32) UUIDs included) are carried as text."""
    base = re.sub(r"\(.*", "", declared.upper()).strip()
    for marker, kind in DECLARED_TYPES:
        if marker in base:
            return kind
    return LogicalType.TEXT


def database_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise ConfigError(
            f"The source URL {redact(url)} names no database file: use sqlite:////absolute/path/to/airflow.db."
        )
    return Path(url.database)


def _parse_instant(text: Any, aware: bool) -> datetime | None:
    if text is None:
        return None
    if isinstance(text, int | float):  # a Unix time stored as a number
        value = datetime.fromtimestamp(text, UTC)
    else:
        value = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # Airflow stores naive UTC
    value = value.astimezone(UTC)
    return value if aware else value.replace(tzinfo=None)


class NotATime(ValueError):
    """A value of a time column that no time format reads."""

    def __init__(self, column: str, value: Any) -> None:
        super().__init__(column, value)
        self.column, self.value = column, value


def _parse_instant_of(column: Column, value: Any, aware: bool) -> datetime | None:
    try:
        return _parse_instant(value, aware)
    except (ValueError, TypeError, OverflowError, OSError):
        raise NotATime(column.name, value) from None


def time_array(values: list[Any], column: Column) -> pa.Array:
    """Text times to Arrow: Arrow's parser for the common uniform case, Python's for mixed forms."""
    aware = column.logical_type is LogicalType.TIMESTAMP_TZ
    target = ARROW_TYPES[column.logical_type]
    try:
        return cast(cast(pa.array(values, pa.string()), pa.timestamp("us")), target)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([_parse_instant_of(column, value, aware) for value in values], target)


def column_array(values: list[Any], column: Column) -> pa.Array:
    """One column of fetched values to Arrow. SQLite columns may hold any type, so fall back value by value."""
    kind = column.logical_type
    if kind in (LogicalType.TIMESTAMP_TZ, LogicalType.TIMESTAMP):
        return time_array(values, column)
    if kind is LogicalType.BOOLEAN:
        return call("not_equal", pa.array(values, pa.int64()), pa.scalar(0, pa.int64()))
    if kind is LogicalType.DATE:
        return cast(pa.array(values, pa.string()), pa.date32())
    target = ARROW_TYPES[kind]
    try:
        return pa.array(values, target)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if kind in (LogicalType.TEXT, LogicalType.JSON):
            return pa.array([None if v is None else v.decode() if isinstance(v, bytes) else str(v) for v in values],
                            target)
        if kind is LogicalType.BYTES:
            return pa.array([None if v is None else v if isinstance(v, bytes) else str(v).encode() for v in values],
                            target)
        raise


def sqlite_time_text(value: datetime) -> str:
    """A cursor instant as Airflow writes it on SQLite (naive UTC text), for julianday()."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime(SQL_TEXT_FORMAT)


class SQLiteSnapshot(SourceSnapshot):
    def __init__(self, connection: Any, horizon: Horizon) -> None:
        self._connection = connection
        self.horizon = horizon

    def _batches(self, sql: str, params: tuple[Any, ...], columns: tuple[Column, ...]) -> Iterator[pa.RecordBatch]:
        schema = arrow_schema(columns)
        cursor = self._connection.execute(sql, params)
        try:
            while rows := cursor.fetchmany(BATCH_ROWS):
                values = list(zip(*rows, strict=True))
                try:
                    arrays = [column_array(list(values[i]), column) for i, column in enumerate(columns)]
                except NotATime as error:
                    shown = repr(error.value)[:60]
                    raise SourceError(
                        f"The SQLite source's column {error.column} holds {shown}, which is not a date or time: "
                        "correct that value in the Airflow database (Airflow writes 'YYYY-MM-DD HH:MM:SS.ffffff', "
                        "UTC), then run the cycle again."
                    ) from None
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
        finally:
            cursor.close()

    def read_rows(self, table: TableSchema, where: CursorFilter | None = None) -> Iterator[pa.RecordBatch]:
        select = ", ".join(quote(column.name) for column in table.columns)
        sql = f"SELECT {select} FROM {quote(table.name)}"
        if where is None:
            yield from self._batches(sql, (), table.columns)
            return
        column = quote(where.column)
        if isinstance(where.after, datetime):
            sql += " WHERE " + TIME_FILTER_SQL.format(column=column)
            for batch in self._batches(sql, (sqlite_time_text(where.after),), table.columns):
                # The exact "strictly after" on the parsed instants (the SQL filter reached back further).
                cursor_type = batch.schema.field(where.column).type
                later = call("greater", batch.column(where.column), pa.scalar(where.after, cursor_type))
                kept = call("filter", batch, later)
                if kept.num_rows:
                    yield kept
            return
        yield from self._batches(f"{sql} WHERE {column} > ?", (where.after,), table.columns)

    def read_keys(self, table: TableSchema, key: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
        columns = tuple(table.column(name) for name in key)
        select = ", ".join(quote(column.name) for column in columns)
        yield from self._batches(f"SELECT {select} FROM {quote(table.name)}", (), columns)

    def count_rows(self, table: TableSchema) -> int:
        return int(self._connection.execute(f"SELECT count(*) FROM {quote(table.name)}").fetchone()[0])

    def estimate_rows(self, table: TableSchema) -> int | None:
        # SQLite keeps no row count; a count walks the smallest index, far quicker than the read it announces.
        return self.count_rows(table)

    def key_digest(self, table: TableSchema, key: tuple[str, ...]) -> KeyDigest | None:
        if not self.renders_key(table, key):
            return None
        sql = key_digest_sql(quote, table.name, key, "CAST({} AS TEXT)", HEX_FUNCTION + "({})", placeholder="?")
        return KeyDigest.from_row(self._connection.execute(sql, key_digest.parameters(len(key))).fetchone())


class SQLiteSource(Source):
    engine = "sqlite"
    other_schema_hint = "Point the source URL at Airflow's own database file, e.g. sqlite:////opt/airflow/airflow.db."

    def __init__(self, url: URL) -> None:
        import sqlite3

        self._url = url
        if source_schema(url) is not None:
            raise ConfigError(
                f"SQLite has no schemas: remove ?{SOURCE_SCHEMA_OPTION}= (or source_schema) for the source "
                f"{redact(url)}; Airflow's tables are in the file itself."
            )
        self._path = database_path(url)
        if not self._path.is_file():
            raise ConfigError(f"The SQLite source {self._path} does not exist: check the path in the source URL.")
        try:
            # Read-only and in autocommit mode: transactions are opened explicitly around each snapshot.
            self._connection = sqlite3.connect(f"{self._path.resolve().as_uri()}?mode=ro", uri=True,
                                               isolation_level=None, check_same_thread=False, timeout=30)
        except sqlite3.Error as error:
            raise SourceError(f"Cannot open the SQLite source {self._path}: {error}.") from None
        self._connection.create_function(MD5_FUNCTION, 1, md5_hex, deterministic=True)
        self._connection.create_function(HEX_FUNCTION, 1, hex_integer, deterministic=True)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._connection.execute(sql, params).fetchall()

    def list_tables(self) -> list[str]:
        return [row[0] for row in self._query(TABLES_SQL)]

    def describe(self, table: str) -> TableSchema:
        rows = self._query(COLUMNS_SQL, (table,))
        if not rows:
            raise ConfigError(f"Table {table!r} does not exist in the SQLite source {self._path}.")
        columns = tuple(
            Column(name=name, logical_type=logical_type(declared or ""), nullable=not not_null and not pk,
                   source_type=declared or "")
            for name, declared, not_null, pk in rows
        )
        primary = tuple(name for name, _, _, pk in sorted(rows, key=lambda row: row[3]) if pk)
        uniques: list[tuple[str, ...]] = []
        for index_name, origin in self._query(UNIQUE_INDEXES_SQL, (table,)):
            key = tuple(row[0] for row in self._query(INDEX_COLUMNS_SQL, (index_name,)))
            if origin != "pk" and key and None not in key and key != primary and key not in uniques:
                uniques.append(key)
        return TableSchema(name=table, columns=columns, primary_key=primary, unique_keys=tuple(uniques))

    @contextmanager
    def snapshot(self) -> Iterator[SourceSnapshot]:
        # Taken before the read transaction starts; SQLite cannot report other connections' open writes, but it
        # has one writer at a time, so ids commit in the order they are taken.
        horizon = Horizon(read_started_at=datetime.now(UTC), oldest_open_write_at=None, sees_open_writes=False,
                          ids_commit_in_order=True)
        self._connection.execute("BEGIN")
        # A deferred transaction takes its snapshot at the first read: take it now.
        self._connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        try:
            yield SQLiteSnapshot(self._connection, horizon)
        finally:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")

    def identity(self) -> str:
        return f"sqlite://{self._path.resolve()}"

    def close(self) -> None:
        self._connection.close()
