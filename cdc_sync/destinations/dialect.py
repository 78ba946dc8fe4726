"""Warehouse SQL as pure text: the base dialect holds the common SQL, subclasses hold tables of differences.

A dialect never touches a connection, so every statement it builds is testable as golden SQL. Identifiers pass
through :meth:`Dialect.quote` and values are always bound parameters (``self.placeholder``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from cdc_sync import key_digest
from cdc_sync.errors import ConfigError
from cdc_sync.types import LogicalType

SYNCED_AT = "_cdc_synced_at"
LOCKS = "_cdc_locks"
DELETED_AT = "_cdc_deleted_at"
RANK = "_cdc_rank"


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ColumnSpec:
    """A warehouse column: name and logical type (nullable is always allowed in the mirror)."""

    name: str
    logical_type: LogicalType


class Dialect:
    """SQL common to DuckDB, PostgreSQL, Snowflake and Redshift; subclasses override only what differs."""

    name: ClassVar[str] = "generic"
    placeholder: ClassVar[str] = "%s"
    max_identifier_length: ClassVar[int] = 63
    TYPE_NAMES: ClassVar[dict[LogicalType, str]] = {
        LogicalType.BOOLEAN: "BOOLEAN",
        LogicalType.INTEGER: "BIGINT",
        LogicalType.DOUBLE: "DOUBLE PRECISION",
        LogicalType.TEXT: "TEXT",
        LogicalType.JSON: "TEXT",
        LogicalType.BYTES: "BYTEA",
        LogicalType.TIMESTAMP_TZ: "TIMESTAMP WITH TIME ZONE",
        LogicalType.TIMESTAMP: "TIMESTAMP",
        LogicalType.DATE: "DATE",
    }
    # The names information_schema.columns.data_type reports for each logical type, for drift checks.
    REPORTED_TYPES: ClassVar[dict[LogicalType, str]] = {}
    # The key-set digest (cdc_sync.key_digest): the text type a key part is cast to, and how eight hex digits of
    # an MD5 become an unsigned integer.
    KEY_TEXT_TYPE: ClassVar[str] = "TEXT"
    HEX_TO_INTEGER: ClassVar[str] = "('x' || {})::bit(32)::bigint"

    # ---- identifiers -------------------------------------------------------------------------------------
    def fold(self, identifier: str) -> str:
        """The case the warehouse stores an identifier in (Snowflake upper-cases, Redshift lower-cases)."""
        return identifier

    def quote(self, identifier: str) -> str:
        return '"' + self.fold(identifier).replace('"', '""') + '"'

    def quote_schema(self, schema: str) -> str:
        return '"' + schema.replace('"', '""') + '"'

    def table(self, schema: str, table: str) -> str:
        return f"{self.quote_schema(schema)}.{self.quote(table)}"

    def column_list(self, names: Sequence[str], prefix: str = "") -> str:
        return ", ".join(f"{prefix}{self.quote(name)}" for name in names)

    def validate_schema_name(self, schema: str) -> None:
        if not schema or not schema.strip():
            raise ConfigError("The destination schema name is empty: pass --schema NAME.")
        if "\x00" in schema:
            raise ConfigError("The destination schema name contains a NUL character: choose a plain name.")
        if len(schema.encode()) > self.max_identifier_length:
            raise ConfigError(
                f"Schema name {schema!r} is longer than {self.name} allows ({self.max_identifier_length} bytes): "
                "choose a shorter --schema."
            )

    def type_name(self, logical_type: LogicalType) -> str:
        return self.TYPE_NAMES[logical_type]

    def reported_type(self, logical_type: LogicalType) -> str:
        """How information_schema.columns.data_type spells the type this dialect creates."""
        return self.REPORTED_TYPES.get(logical_type, self.type_name(logical_type)).lower()

    def can_hold(self, reported: str, logical_type: LogicalType) -> bool:
        """Whether an existing mirror column (as information_schema reports it) can take values of a logical type."""
        reported = reported.lower()
        if reported == self.reported_type(logical_type):
            return True
        text_like = {self.reported_type(LogicalType.TEXT), self.reported_type(LogicalType.JSON)}
        return reported in text_like and logical_type in {LogicalType.TEXT, LogicalType.JSON}

    # ---- DDL ---------------------------------------------------------------------------------------------
    def create_schema(self, schema: str) -> Statement:
        return Statement(f"CREATE SCHEMA IF NOT EXISTS {self.quote_schema(schema)}")

    def column_definitions(self, columns: Sequence[ColumnSpec]) -> str:
        return ", ".join(f"{self.quote(c.name)} {self.type_name(c.logical_type)}" for c in columns)

    def create_table(self, schema: str, table: str, columns: Sequence[ColumnSpec]) -> Statement:
        return Statement(
            f"CREATE TABLE IF NOT EXISTS {self.table(schema, table)} ({self.column_definitions(columns)})"
        )

    def create_state_table(
        self, schema: str, table: str, columns: Sequence[ColumnSpec], primary_key: Sequence[str]
    ) -> Statement:
        key = f", PRIMARY KEY ({self.column_list(primary_key)})" if primary_key else ""
        return Statement(
            f"CREATE TABLE IF NOT EXISTS {self.table(schema, table)} ({self.column_definitions(columns)}{key})"
        )

    def add_column(self, schema: str, table: str, column: ColumnSpec) -> Statement:
        return Statement(
            f"ALTER TABLE {self.table(schema, table)} ADD COLUMN {self.quote(column.name)} "
            f"{self.type_name(column.logical_type)}"
        )

    def rename_column(self, schema: str, table: str, old: str, new: str) -> Statement:
        """Only for an Airflow upgrade retyping a column: the old values are kept under a new name."""
        return Statement(
            f"ALTER TABLE {self.table(schema, table)} RENAME COLUMN {self.quote(old)} TO {self.quote(new)}"
        )

    def table_columns(self, schema: str, table: str) -> Statement:
        p = self.placeholder
        return Statement(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = {p} AND table_name = {p} ORDER BY ordinal_position",
            (schema, self.fold(table)),
        )

    def schema_columns(self, schema: str) -> Statement:
        """Every mirror column of ``schema`` at once, as (table, column, type): read once per cycle."""
        return Statement(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = {self.placeholder} ORDER BY table_name, ordinal_position",
            (schema,),
        )

    def session_setup(self) -> Statement:
        """Run once per connection: timestamps without a zone are written and read as UTC."""
        return Statement("SET TIME ZONE 'UTC'")

    def staging_name(self, table: str, purpose: str = "rows") -> str:
        return f"_cdc_stage_{purpose}_{table}"[: self.max_identifier_length]

    def create_staging(self, staging: str, columns: Sequence[ColumnSpec]) -> Statement:
        return Statement(f"CREATE TEMPORARY TABLE {self.quote(staging)} ({self.column_definitions(columns)})")

    def drop_staging(self, staging: str) -> Statement:
        return Statement(f"DROP TABLE IF EXISTS {self.quote(staging)}")

    # ---- data --------------------------------------------------------------------------------------------
    def _key_match(self, key: Sequence[str], left: str, right: str, nullable: frozenset[str]) -> str:
        parts = []
        for name in key:
            column = self.quote(name)
            operator = "IS NOT DISTINCT FROM" if name in nullable else "="
            parts.append(f"{left}.{column} {operator} {right}.{column}")
        return " AND ".join(parts)

    def deduplicated(self, staging: str, columns: Sequence[str], key: Sequence[str], order_by: str | None) -> str:
        """The staging rows, one per key: the latest by ``order_by`` wins (re-reads in the overlap are harmless)."""
        order = f" ORDER BY {self.quote(order_by)} DESC NULLS LAST" if order_by else ""
        return (
            f"SELECT {self.column_list(columns)} FROM (SELECT {self.column_list(columns)}, "
            f"ROW_NUMBER() OVER (PARTITION BY {self.column_list(key)}{order}) AS {RANK} "
            f"FROM {self.quote(staging)}) AS ranked WHERE {RANK} = 1"
        )

    def changed(self, columns: Sequence[str], target: str, source: str) -> str:
        """True when a matched row differs in any column, or was marked deleted: unchanged rows are not written."""
        tests = [f"{target}.{self.quote(c)} IS DISTINCT FROM {source}.{self.quote(c)}" for c in columns]
        tests.append(f"{target}.{self.quote(DELETED_AT)} IS NOT NULL")
        return "(" + " OR ".join(tests) + ")"

    def merge(
        self,
        schema: str,
        table: str,
        staging: str,
        columns: Sequence[str],
        key: Sequence[str],
        order_by: str | None,
        nullable_key: frozenset[str],
        synced_at: Any,
        compare_rows: bool = True,
    ) -> Statement:
        """Upsert the staging rows by key. ``compare_rows`` skips matched rows equal in every column; without it
        every matched row is updated, which spares the warehouse reading all columns of the mirror (see
        :meth:`cdc_sync.sources.SourceSnapshot.reads_only_rewritten_rows`)."""
        p = self.placeholder
        non_key = [c for c in columns if c not in key]
        assignments = [f"{self.quote(c)} = s.{self.quote(c)}" for c in non_key]
        assignments += [f"{self.quote(SYNCED_AT)} = {p}", f"{self.quote(DELETED_AT)} = NULL"]
        insert_columns = [*columns, SYNCED_AT]
        only_changed = f" AND {self.changed(non_key, 't', 's')}" if compare_rows else ""
        sql = (
            f"MERGE INTO {self.table(schema, table)} AS t "
            f"USING ({self.deduplicated(staging, columns, key, order_by)}) AS s "
            f"ON {self._key_match(key, 't', 's', nullable_key)} "
            f"WHEN MATCHED{only_changed} THEN UPDATE SET {', '.join(assignments)} "
            f"WHEN NOT MATCHED THEN INSERT ({self.column_list(insert_columns)}) "
            f"VALUES ({self.column_list(columns, 's.')}, {p})"
        )
        return Statement(sql, (synced_at, synced_at))

    def delete_all(self, schema: str, table: str) -> Statement:
        return Statement(f"DELETE FROM {self.table(schema, table)}")

    def insert_from_staging(self, schema: str, table: str, staging: str, columns: Sequence[str],
                            synced_at: Any) -> Statement:
        return Statement(
            f"INSERT INTO {self.table(schema, table)} ({self.column_list([*columns, SYNCED_AT])}) "
            f"SELECT {self.column_list(columns)}, {self.placeholder} FROM {self.quote(staging)}",
            (synced_at,),
        )

    def _keys_listed(self, schema: str, table: str, keys: str, key: Sequence[str], nullable: frozenset[str],
                     listed: bool) -> str:
        """Whether a mirror row's key is (``listed``) or is not among the staged ``keys``."""
        match = self._key_match(key, "k", self.table(schema, table), nullable)
        return f"{'' if listed else 'NOT '}EXISTS (SELECT 1 FROM {self.quote(keys)} AS k WHERE {match})"

    def _soft_delete(self, schema: str, table: str, condition: str, deleted_at: Any) -> Statement:
        return Statement(
            f"UPDATE {self.table(schema, table)} SET {self.quote(DELETED_AT)} = {self.placeholder} "
            f"WHERE {self.quote(DELETED_AT)} IS NULL AND {condition}",
            (deleted_at,),
        )

    def soft_delete_absent(self, schema: str, table: str, keys: str, key: Sequence[str],
                           nullable: frozenset[str], deleted_at: Any) -> Statement:
        return self._soft_delete(schema, table, self._keys_listed(schema, table, keys, key, nullable, False),
                                 deleted_at)

    def hard_delete_absent(self, schema: str, table: str, keys: str, key: Sequence[str],
                           nullable: frozenset[str]) -> Statement:
        condition = self._keys_listed(schema, table, keys, key, nullable, False)
        return Statement(f"DELETE FROM {self.table(schema, table)} WHERE {condition}")

    def soft_delete_listed(self, schema: str, table: str, keys: str, key: Sequence[str],
                           nullable: frozenset[str], deleted_at: Any) -> Statement:
        """Mark deleted the live rows whose keys are in ``keys`` (``cdc-sync verify --fix``: extra rows)."""
        return self._soft_delete(schema, table, self._keys_listed(schema, table, keys, key, nullable, True),
                                 deleted_at)

    def hard_delete_listed(self, schema: str, table: str, keys: str, key: Sequence[str],
                           nullable: frozenset[str]) -> Statement:
        condition = self._keys_listed(schema, table, keys, key, nullable, True)
        return Statement(f"DELETE FROM {self.table(schema, table)} WHERE {condition}")

    def soft_delete_all(self, schema: str, table: str, deleted_at: Any) -> Statement:
        """Mark every live row deleted (a TRUNCATE read from the log, under soft deletes)."""
        return self._soft_delete(schema, table, "1 = 1", deleted_at)

    def live_text_expression(self, column: ColumnSpec) -> str:
        """A mirror column as read back for comparison: JSON as its text, everything else as stored."""
        name = self.quote(column.name)
        return f"CAST({name} AS TEXT)" if column.logical_type is LogicalType.JSON else name

    def select_live(self, schema: str, table: str, columns: Sequence[ColumnSpec]) -> Statement:
        """The live rows of a mirror table, only ``columns`` (``cdc-sync verify``)."""
        select = ", ".join(self.live_text_expression(column) for column in columns)
        return Statement(
            f"SELECT {select} FROM {self.table(schema, table)} WHERE {self.quote(DELETED_AT)} IS NULL"
        )

    def empty_table(self, relation: str) -> Statement:
        return Statement(f"DELETE FROM {self.quote(relation)}")

    def count_all(self, schema: str, table: str) -> Statement:
        return Statement(f"SELECT count(*) FROM {self.table(schema, table)}")

    def count_live(self, schema: str, table: str) -> Statement:
        return Statement(
            f"SELECT count(*) FROM {self.table(schema, table)} WHERE {self.quote(DELETED_AT)} IS NULL"
        )

    def key_digest(self, schema: str, table: str, key: Sequence[ColumnSpec]) -> Statement | None:
        """The live rows' count and key digest (:mod:`cdc_sync.key_digest`); None for a key it cannot render."""
        if not key_digest.renderable([column.logical_type for column in key]):
            return None
        p = self.placeholder
        rendered = f" || {p} || ".join(
            f"COALESCE(CAST({self.quote(column.name)} AS {self.KEY_TEXT_TYPE}), {p})" for column in key
        )
        high = self.HEX_TO_INTEGER.format("SUBSTRING(h, 1, 8)")
        low = self.HEX_TO_INTEGER.format("SUBSTRING(h, 9, 8)")
        return Statement(
            f"SELECT count(*), COALESCE(SUM({high}), 0), COALESCE(SUM({low}), 0) "
            f"FROM (SELECT MD5({rendered}) AS h FROM {self.table(schema, table)} "
            f"WHERE {self.quote(DELETED_AT)} IS NULL) AS rendered_keys",
            key_digest.parameters(len(key)),
        )

    def count_rows(self, relation: str) -> Statement:
        return Statement(f"SELECT count(*) FROM {self.quote(relation)}")

    def max_value(self, relation: str, column: str) -> Statement:
        return Statement(f"SELECT max({self.quote(column)}) FROM {self.quote(relation)}")

    # ---- state tables ------------------------------------------------------------------------------------
    def delete_where(self, schema: str, table: str, column: str, value: Any) -> Statement:
        return Statement(
            f"DELETE FROM {self.table(schema, table)} WHERE {self.quote(column)} = {self.placeholder}", (value,)
        )

    def insert_row(self, schema: str, table: str, row: dict[str, Any]) -> Statement:
        placeholders = ", ".join([self.placeholder] * len(row))
        return Statement(
            f"INSERT INTO {self.table(schema, table)} ({self.column_list(list(row))}) VALUES ({placeholders})",
            tuple(row.values()),
        )

    def select_all(self, schema: str, table: str, columns: Sequence[str], order_by: str | None = None) -> Statement:
        order = f" ORDER BY {self.quote(order_by)}" if order_by else ""
        return Statement(f"SELECT {self.column_list(columns)} FROM {self.table(schema, table)}{order}")

    def schema_exists(self, schema: str) -> Statement:
        return Statement(
            f"SELECT count(*) FROM information_schema.schemata WHERE schema_name = {self.placeholder}", (schema,)
        )


def lease_name(schema: str, table: str | None = None) -> str:
    """The ``lock_name`` of a lease row: the schema lock's, or one table's (see ``Destination.try_lock``)."""
    return f"cdc_sync:{schema}" if table is None else f"cdc_sync:{schema}/{table}"


class LeaseLockDialect(Dialect):
    """The lease-row cycle lock of warehouses without advisory locks (Snowflake, Redshift).

    How a lease is *taken* atomically differs per warehouse and stays in the subclass; the table and the
    read / renew / release statements are common.
    """

    def create_lock_table(self, schema: str) -> Statement:
        columns = [ColumnSpec("lock_name", LogicalType.TEXT), ColumnSpec("holder", LogicalType.TEXT),
                   ColumnSpec("expires_at", LogicalType.TIMESTAMP_TZ)]
        return self.create_table(schema, LOCKS, columns)

    def lease_holder(self, schema: str, lock: str) -> Statement:
        return Statement(
            f"SELECT {self.quote('holder')} FROM {self.table(schema, LOCKS)} "
            f"WHERE {self.quote('lock_name')} = {self.placeholder}",
            (lock,),
        )

    def renew_lease(self, schema: str, lock: str, holder: str, expires: Any) -> Statement:
        p = self.placeholder
        return Statement(
            f"UPDATE {self.table(schema, LOCKS)} SET {self.quote('expires_at')} = {p} "
            f"WHERE {self.quote('lock_name')} = {p} AND {self.quote('holder')} = {p}",
            (expires, lock, holder),
        )

    def release_lease(self, schema: str, lock: str, holder: str) -> Statement:
        return self._delete_lease(schema, lock, "holder", "=", holder)

    def _delete_lease(self, schema: str, lock: str, column: str, operator: str, value: Any) -> Statement:
        """``DELETE`` the lease row of ``lock`` whose ``column`` compares to ``value`` (``operator`` is ours)."""
        p = self.placeholder
        return Statement(
            f"DELETE FROM {self.table(schema, LOCKS)} WHERE {self.quote('lock_name')} = {p} "
            f"AND {self.quote(column)} {operator} {p}",
            (lock, value),
        )
