"""Airflow on PostgreSQL: introspection from pg_catalog, the commit horizon from pg_stat_activity, and rows
streamed by ``COPY (SELECT …) TO STDOUT`` into Arrow: large whole-table reads as binary through ADBC
(:mod:`cdc_sync.sources.postgres_arrow`), filtered and small reads as CSV through psycopg.

This module is the PostgreSQL *source dialect*: the only place that writes SQL for a PostgreSQL source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from cdc_sync import key_digest
from cdc_sync.errors import ConfigError, SourceError
from cdc_sync.key_digest import KeyDigest
from cdc_sync.sources.base import (
    CursorFilter,
    Horizon,
    RowFilter,
    RowVersionFilter,
    SeenRowVersions,
    Source,
    SourceSnapshot,
    key_digest_sql,
    quote,
    reach_probe_sql,
)
from cdc_sync.sources.csv_stream import csv_batches
from cdc_sync.sources.postgres_arrow import ARROW_READ_MIN_BYTES, ArrowReader
from cdc_sync.sources.postgres_arrow import select_expression as binary_select_expression
from cdc_sync.sources.publication import COLUMN_LISTS_FROM
from cdc_sync.types import Column, LogicalType, TableSchema
from cdc_sync.urls import SOURCE_SCHEMA_OPTION, URL, postgres_conninfo, redact, scrub, source_schema

TYPE_MAP: dict[str, LogicalType] = {
    "bool": LogicalType.BOOLEAN,
    "int2": LogicalType.INTEGER,
    "int4": LogicalType.INTEGER,
    "int8": LogicalType.INTEGER,
    "oid": LogicalType.INTEGER,
    "float4": LogicalType.DOUBLE,
    "float8": LogicalType.DOUBLE,
    "text": LogicalType.TEXT,
    "varchar": LogicalType.TEXT,
    "bpchar": LogicalType.TEXT,
    "name": LogicalType.TEXT,
    "citext": LogicalType.TEXT,
    "uuid": LogicalType.TEXT,
    "numeric": LogicalType.TEXT,  # exact: carried as its text, never rounded through a float
    "json": LogicalType.JSON,
    "jsonb": LogicalType.JSON,
    "bytea": LogicalType.BYTES,
    "timestamptz": LogicalType.TIMESTAMP_TZ,
    "timestamp": LogicalType.TIMESTAMP,
    "date": LogicalType.DATE,
}
# Types whose COPY text Arrow reads as-is; every other type is selected as ``::text``.
NATIVE_TEXT_FORMS = {"bool", "int2", "int4", "int8", "oid", "float4", "float8", "text", "varchar", "bpchar",
                     "name", "bytea", "timestamptz", "timestamp", "date"}

COLUMNS_SQL = """
SELECT c.relname, a.attname, t.typname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE n.nspname = current_schema() AND c.relname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""
KEYS_SQL = """
SELECT c.relname, i.indisprimary, array_agg(a.attname ORDER BY k.ordinality)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ordinality)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = current_schema() AND c.relname = ANY(%s) AND i.indisunique AND i.indpred IS NULL
GROUP BY c.relname, i.indexrelid, i.indisprimary
ORDER BY c.relname, NOT i.indisprimary, i.indexrelid
"""
TABLES_SQL = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname
"""
# The oldest write transaction of *other* sessions on this database: only sessions holding a transaction id
# have written. Stats visibility needs the same role or pg_read_all_stats; the fourth column tells which.
# The fifth column lists the transaction ids from the snapshot's xmin up to its xmax that are still in progress when
# the statement runs, subtransactions included (pg_current_snapshot() lists top-level ids only); NULL when the range
# is too wide to check id by id. pg_xact_status needs no privilege: a committed id costs one commit-log lookup, an
# open one a look at the running transactions. The last column is each table's count of deleted rows in the
# statistics (NULL when track_counts is off): read once per transaction and kept, so it is never later than the
# snapshot; a deletion counted late only makes the next cycle check again. clock_timestamp() is read after the
# statement took the snapshot (now() is the transaction's start, before it).
HORIZON_SQL = """
WITH taken AS (SELECT pg_current_snapshot() AS snapshot)
SELECT now(), snapshot::text,
       (SELECT min(xact_start) FROM pg_stat_activity
         WHERE datname = current_database() AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()),
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
         OR pg_has_role(current_user, 'pg_read_all_stats', 'member'),
       CASE WHEN pg_snapshot_xmax(snapshot)::text::bigint - pg_snapshot_xmin(snapshot)::text::bigint <= %s THEN
         (SELECT coalesce(array_agg(xid), '{}')
            FROM generate_series(pg_snapshot_xmin(snapshot)::text::bigint,
                                 pg_snapshot_xmax(snapshot)::text::bigint - 1) AS xid
           WHERE pg_xact_status(xid::text::xid8) = 'in progress')
       END,
       CASE WHEN current_setting('track_counts')::boolean THEN
         (SELECT coalesce(json_object_agg(relname, n_tup_del), '{}') FROM pg_stat_user_tables
           WHERE schemaname = current_schema())
       END,
       (SELECT coalesce(bool_or(pg_xact_status(x) <> 'in progress'), false)
          FROM pg_snapshot_xip(snapshot) AS x),
       clock_timestamp()
FROM taken
"""
# The snapshot is taken when the statement starts, pg_stat_activity is read while it runs: a writer in progress at
# the snapshot that commits in between is in neither (its rows unseen, itself not counted as open). The next to last
# column, evaluated after the writers, says whether one of the snapshot's open transactions has ended since.
# The widest xmin..xmax range whose ids are checked one by one (a few milliseconds); beyond it, every id after the
# oldest open transaction counts as unseen by this read.
SUBTRANSACTION_CHECK_LIMIT = 10_000
# Rows whose xmin a stored snapshot did not see: at or after its xmax, compared modulo 2^32 the way PostgreSQL
# orders xids (exact while they are less than 2^31 apart; further apart, the read goes without the filter), or
# one of the transactions in progress then. Frozen and special xids (0-2) are old by definition. Plain
# arithmetic, unlike age(), lets PostgreSQL scan in parallel. Parameters: xmax and the in-progress xids, mod 2^32.
ROW_VERSION_PREDICATE = (
    "(xmin::text::bigint >= 3 AND (mod(xmin::text::bigint - %s::bigint + 4294967296, 4294967296) < 2147483648"
    " OR xmin::text::bigint = ANY(%s::bigint[])))"
)
ROW_VERSION_MAX_DISTANCE = 1_000_000_000
# The named source schema becomes the session's whole search_path, so every query below (current_schema(), bare
# table names) reads it. The value is a quoted identifier, bound as a parameter.
USE_SCHEMA_SQL = "SELECT set_config('search_path', %s, false)"
CURRENT_SCHEMA_SQL = "SELECT current_schema()"
# A replication slot of this database: the WAL it keeps from being recycled, and whether PostgreSQL still keeps it.
SLOT_WAL_SQL = ("SELECT (pg_current_wal_lsn() - restart_lsn)::bigint, wal_status FROM pg_replication_slots "
                "WHERE slot_name = %s AND database = current_database()")
# The planner's row count of a table (kept by VACUUM, ANALYZE and CREATE INDEX): a progress bar's total.
ESTIMATE_ROWS_SQL = """
SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relname = %s
"""
# Eight hex digits of an MD5 as an unsigned integer (the key digest, cdc_sync.key_digest).
HEX_TO_INTEGER = "('x' || {})::bit(32)::bigint"
SESSION_SETTINGS_SQL = (
    "SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'; SET bytea_output = 'hex'; SET extra_float_digits = 3"
)
# The settings a second connection copies from the first, so that text forms (``::text`` of arrays, intervals)
# render alike on both, and bare table names find the same schema.
SHARED_SETTINGS_SQL = (
    "SELECT name, setting FROM pg_settings WHERE name IN "
    "('TimeZone', 'DateStyle', 'IntervalStyle', 'bytea_output', 'extra_float_digits', 'search_path')"
)
EXPORT_SNAPSHOT_SQL = "SELECT pg_export_snapshot()"
# The bytes of a table's heap: whether a whole-table read is large enough for ADBC (``to_regclass`` of the quoted
# name follows the search path; 0 for a name it cannot resolve).
HEAP_BYTES_SQL = "SELECT coalesce(pg_relation_size(to_regclass(%s)), 0)"


def row_version_parameters(since: SeenRowVersions) -> tuple[int, list[int]]:
    """The parameters of :data:`ROW_VERSION_PREDICATE`: 64-bit transaction ids as the 32-bit xmin shows them."""
    return since.xmax % 2**32, [xid % 2**32 for xid in since.in_progress]


def select_expression(column: Column) -> str:
    name = quote(column.name)
    base_type = column.source_type.split("(", 1)[0]
    return name if base_type in NATIVE_TEXT_FORMS else f"{name}::text"


class PostgresSnapshot(SourceSnapshot):
    def __init__(self, connection: Any, horizon: Horizon, arrow: Callable[[], ArrowReader]) -> None:
        """``arrow``: the source's ADBC reader, opened on first use."""
        self._connection = connection
        self.horizon = horizon
        self._arrow = arrow
        self._joined: ArrowReader | None = None

    def _large(self, table: TableSchema) -> bool:
        """Whether a whole-table read of ``table`` goes through ADBC (see :data:`ARROW_READ_MIN_BYTES`)."""
        return int(self._connection.execute(HEAP_BYTES_SQL, (quote(table.name),)).fetchone()[0]) >= (
            ARROW_READ_MIN_BYTES)

    def _arrow_batches(self, table: TableSchema, columns: tuple[Column, ...]) -> Iterator[pa.RecordBatch]:
        """``columns`` of the whole table, read by ADBC in this very snapshot (exported once, at the first read)."""
        if self._joined is None:
            reader = self._arrow()
            reader.join(self._connection.execute(EXPORT_SNAPSHOT_SQL).fetchone()[0])
            self._joined = reader
        select = ", ".join(binary_select_expression(quote(column.name), column.source_type) for column in columns)
        yield from self._joined.batches(f"SELECT {select} FROM {quote(table.name)}", columns)

    def end(self) -> None:
        """End the ADBC side of the snapshot, if it was used."""
        if self._joined is not None:
            joined, self._joined = self._joined, None
            joined.leave()

    def _copy(self, select_sql: str, params: tuple[Any, ...]) -> Any:
        # psycopg binds COPY parameters on the client side with proper quoting: values never meet SQL text.
        return self._connection.cursor().copy(f"COPY ({select_sql}) TO STDOUT (FORMAT CSV)", params)

    def read_rows(self, table: TableSchema, where: RowFilter | None = None) -> Iterator[pa.RecordBatch]:
        if where is None and self._large(table):
            yield from self._arrow_batches(table, table.columns)
            return
        select = ", ".join(select_expression(column) for column in table.columns)
        sql = f"SELECT {select} FROM {quote(table.name)}"
        params: tuple[Any, ...] = ()
        if isinstance(where, CursorFilter):
            sql += f" WHERE {quote(where.column)} > %s"
            params = (where.after,)
            if self._row_version_usable(where.since_row_version):
                sql += f" AND {ROW_VERSION_PREDICATE}"
                params += row_version_parameters(where.since_row_version)  # type: ignore[arg-type]
        elif isinstance(where, RowVersionFilter) and self._row_version_usable(where.since):
            sql += f" WHERE {ROW_VERSION_PREDICATE}"
            params = row_version_parameters(where.since)
        with self._copy(sql, params) as copy:
            yield from csv_batches(copy, table.columns)

    def reads_only_rewritten_rows(self, where: RowFilter | None) -> bool:
        # Only with a cursor too: xmin comparisons are modulo 2^32, so a row frozen more than 2^31 transactions
        # ago can look new; the cursor filter keeps such old rows out of the read.
        return isinstance(where, CursorFilter) and self._row_version_usable(where.since_row_version)

    def _row_version_usable(self, since: SeenRowVersions | None) -> bool:
        """xid comparisons are exact only within 2^31 transactions; further apart, read without the filter."""
        if since is None or self.horizon.row_version is None:
            return False
        return 0 <= self.horizon.row_version.xmin - since.xmin < ROW_VERSION_MAX_DISTANCE

    def read_keys(self, table: TableSchema, key: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
        columns = tuple(table.column(name) for name in key)
        if self._large(table):
            yield from self._arrow_batches(table, columns)
            return
        select = ", ".join(select_expression(column) for column in columns)
        with self._copy(f"SELECT {select} FROM {quote(table.name)}", ()) as copy:
            yield from csv_batches(copy, columns)

    def count_rows(self, table: TableSchema) -> int:
        return int(self._connection.execute(f"SELECT count(*) FROM {quote(table.name)}").fetchone()[0])

    def estimate_rows(self, table: TableSchema) -> int | None:
        row = self._connection.execute(ESTIMATE_ROWS_SQL, (table.name,)).fetchone()
        return None if row is None or row[0] < 0 else int(row[0])  # -1: never vacuumed nor analyzed

    def key_digest(self, table: TableSchema, key: tuple[str, ...]) -> KeyDigest | None:
        # char(n) prints padded by COPY (so in the mirror) but casts to text unpadded: not renderable alike.
        if not self.renders_key(table, key) or any(table.column(name).source_type == "bpchar" for name in key):
            return None
        sql = key_digest_sql(quote, table.name, key, "{}::text", HEX_TO_INTEGER)
        return KeyDigest.from_row(self._connection.execute(sql, key_digest.parameters(len(key))).fetchone())

    def row_reaches(self, table: TableSchema, key: tuple[str, ...], values: tuple[Any, ...], column: str,
                    value: Any) -> bool:
        # Text parameters go as "unknown", so PostgreSQL types them from the key column (uuid, varchar, …) and
        # uses the key's unique index.
        sql = reach_probe_sql(quote, table.name, key, column)
        return bool(self._connection.execute(sql, (*values, value)).fetchone()[0])

    def reaches(self, table: TableSchema, column: str, value: Any) -> bool:
        return bool(self._connection.execute(reach_probe_sql(quote, table.name, (), column), (value,)).fetchone()[0])


class PostgresSource(Source):
    engine = "postgresql"
    has_row_versions = True
    open_writes_hint = "grant pg_read_all_stats to the source role (or use Airflow's own role)"
    other_schema_hint = (
        f"If Airflow's tables live in another PostgreSQL schema, name it: add ?{SOURCE_SCHEMA_OPTION}=NAME to the "
        "source URL (source_schema='NAME' on the Airflow task)."
    )

    def __init__(self, url: URL) -> None:
        import psycopg

        self._url = url
        self._conninfo = postgres_conninfo(url)
        try:
            self._connection = psycopg.connect(**self._conninfo, autocommit=True)
        except psycopg.OperationalError as error:
            reason = scrub(" ".join(str(error).split()), url) or type(error).__name__
            raise SourceError(
                f"Cannot connect to the source {redact(url)}: {reason}. Check host, port, database and credentials."
            ) from None
        # One round trip: the session settings COPY's text output is parsed under.
        self._connection.execute(SESSION_SETTINGS_SQL)
        self._arrow: ArrowReader | None = None
        self._schema = source_schema(url)
        if self._schema is not None:
            try:
                self._use_schema(self._schema)
            except BaseException:
                self._connection.close()
                raise

    def _use_schema(self, schema: str) -> None:
        """Read Airflow's tables from ``schema``; PostgreSQL skips a search_path entry that does not exist or that
        the role may not use, so that is checked here."""
        self._connection.execute(USE_SCHEMA_SQL, (quote(schema),))
        if self._connection.execute(CURRENT_SCHEMA_SQL).fetchone()[0] != schema:
            raise ConfigError(
                f"Schema {schema!r} (?{SOURCE_SCHEMA_OPTION}= in the source URL) does not exist in the source "
                f"{redact(self._url)}, or the source role lacks USAGE on it: name the schema that holds Airflow's "
                "tables (the schema names are case-sensitive)."
            )

    def list_tables(self) -> list[str]:
        return [row[0] for row in self._connection.execute(TABLES_SQL).fetchall()]

    def describe(self, table: str) -> TableSchema:
        return self.describe_tables([table])[table]

    def describe_tables(self, tables: list[str]) -> dict[str, TableSchema]:
        """Two catalog queries for all the tables, whatever their number."""
        columns: dict[str, list[Column]] = {table: [] for table in tables}
        for table, name, type_name, full, nullable in self._connection.execute(COLUMNS_SQL, (tables,)).fetchall():
            columns[table].append(Column(
                name=name, logical_type=TYPE_MAP.get(type_name, LogicalType.TEXT), nullable=nullable,
                source_type=type_name if type_name in TYPE_MAP or type_name in NATIVE_TEXT_FORMS else full,
            ))
        missing = [table for table in tables if not columns[table]]
        if missing:
            raise ConfigError(f"Table {missing[0]!r} does not exist in the source {redact(self._url)}.")
        primary: dict[str, tuple[str, ...]] = {}
        uniques: dict[str, list[tuple[str, ...]]] = {table: [] for table in tables}
        for table, is_primary, key_columns in self._connection.execute(KEYS_SQL, (tables,)).fetchall():
            if is_primary:
                primary[table] = tuple(key_columns)
            else:
                uniques[table].append(tuple(key_columns))
        return {
            table: TableSchema(name=table, columns=tuple(columns[table]), primary_key=primary.get(table, ()),
                               unique_keys=tuple(uniques[table]))
            for table in tables
        }

    @contextmanager
    def snapshot(self) -> Iterator[SourceSnapshot]:
        import psycopg

        connection = self._connection
        connection.autocommit = False
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        try:
            with connection.transaction():
                started, seen, oldest, sees_all, still_open, deleted, missed, taken_by = connection.execute(
                    HORIZON_SQL, (SUBTRANSACTION_CHECK_LIMIT,)).fetchone()
                seen_rows = SeenRowVersions.parse(seen).with_subtransactions(
                    None if still_open is None else set(still_open))
                horizon = Horizon(started, oldest, bool(sees_all), seen_rows, deletes_recorded=deleted,
                                  snapshot_taken_by=taken_by, writer_missed=bool(missed))
                snapshot = PostgresSnapshot(connection, horizon, self._arrow_reader)
                try:
                    yield snapshot
                finally:
                    snapshot.end()
        finally:
            connection.autocommit = True

    def _arrow_reader(self) -> ArrowReader:
        if self._arrow is None:
            from psycopg.conninfo import make_conninfo

            settings = dict(self._connection.execute(SHARED_SETTINGS_SQL).fetchall())
            self._arrow = ArrowReader(self._url, make_conninfo(**self._conninfo), settings)
        return self._arrow

    def identity(self) -> str:
        identity = f"postgresql://{self._conninfo['host']}:{self._conninfo['port']}/{self._url.database}"
        # Two Airflow environments may share one database in two schemas: a named schema keeps them apart.
        return identity if self._schema is None else f"{identity}?{SOURCE_SCHEMA_OPTION}={self._schema}"

    def location(self) -> str:
        schema = self._connection.execute(CURRENT_SCHEMA_SQL).fetchone()[0]
        where = f"schema {schema}" if schema else "no schema (search_path names none that exists)"
        return f"{redact(self._url)} ({where})"

    def replication_slot_wal(self, slot: str) -> tuple[int | None, str | None] | None:
        if self._connection.info.server_version < COLUMN_LISTS_FROM:
            return None  # cdc_sync makes slots on PostgreSQL 15+ only (wal_status is 13+)
        row = self._connection.execute(SLOT_WAL_SQL, (slot,)).fetchone()
        return None if row is None else (row[0], row[1])

    def close(self) -> None:
        try:
            if self._arrow is not None:
                self._arrow.close()
        finally:
            self._connection.close()
