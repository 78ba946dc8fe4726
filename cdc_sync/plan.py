"""Per table: which columns, which merge key, which strategy — decided from the catalog and introspection."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from cdc_sync import catalog
from cdc_sync.config import DeleteMode, SyncConfig
from cdc_sync.destinations.dialect import ColumnSpec
from cdc_sync.errors import ConfigError, UnknownTableError
from cdc_sync.secrets import secret_columns
from cdc_sync.types import LogicalType, TableSchema

log = logging.getLogger(__name__)

Strategy = Literal["incremental", "append", "row_version", "full"]
# Strategies that read by a cursor column, and so keep a watermark that some source row must reach.
CURSOR_STRATEGIES: tuple[Strategy, ...] = ("incremental", "append")
TIMESTAMP_TYPES = {LogicalType.TIMESTAMP_TZ, LogicalType.TIMESTAMP}


@dataclass(frozen=True)
class TablePlan:
    table: TableSchema  # the source table restricted to the columns that are mirrored
    strategy: Strategy
    cursor: str | None
    merge_key: tuple[str, ...]  # empty: no usable key, the table is replaced as a whole
    delete_mode: DeleteMode
    hashed_columns: frozenset[str]
    excluded_columns: tuple[str, ...]
    may_become_empty: bool
    # Columns excluded only because their names mark a credential (reported once per run).
    excluded_by_name: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        return tuple(ColumnSpec(c.name, c.logical_type) for c in self.table.columns)

    @property
    def column_names(self) -> tuple[str, ...]:
        return self.table.column_names

    @property
    def nullable_key(self) -> frozenset[str]:
        return frozenset(name for name in self.merge_key if self.table.column(name).nullable)

    @property
    def cursor_is_timestamp(self) -> bool:
        return self.cursor is not None and self.table.column(self.cursor).logical_type in TIMESTAMP_TYPES

    @property
    def merge_key_text(self) -> str | None:
        """The merge key as the watermark stores it (comma-separated), None for a keyless table."""
        return ",".join(self.merge_key) or None

    @property
    def cursor_is_naive(self) -> bool:
        """A timestamp cursor without time zone: its values are naive UTC."""
        return self.cursor is not None and self.table.column(self.cursor).logical_type is LogicalType.TIMESTAMP

    def parse_mark(self, text: str | None) -> Any:
        """A stored high-water mark (ISO text or integer text) as a value comparable with the cursor column."""
        if text is None:
            return None
        if self.cursor_is_timestamp:
            value = datetime.fromisoformat(text)
            return value.replace(tzinfo=None) if self.cursor_is_naive else value
        return int(text)

    def source_time(self, instant: datetime) -> datetime:
        """A source instant in the cursor's own form: naive UTC for naive timestamp columns."""
        return instant.astimezone(UTC).replace(tzinfo=None) if self.cursor_is_naive else instant


def select_tables(config: SyncConfig, available: Iterable[str]) -> tuple[list[str], list[str]]:
    """The tables to mirror, and warnings for default tables this Airflow version does not have."""
    present = set(available)
    warnings: list[str] = []
    if config.tables is None:
        wanted = list(catalog.DEFAULT_TABLES)
        for name in wanted:
            if name not in present:
                warnings.append(f"Default table {name} does not exist in this Airflow database; skipped.")
        selected = [name for name in wanted if name in present]
        required = list(config.additional_tables)
    elif not config.tables:
        selected = sorted(name for name in present if name not in catalog.NEVER_MIRRORED)
        required = list(config.additional_tables)
    else:
        selected = []
        required = [*config.tables, *config.additional_tables]
    missing = [name for name in required if name not in present]
    if missing:
        raise UnknownTableError(
            f"Table(s) {', '.join(missing)} do not exist in the source database: check the spelling, or remove them "
            "from tables/additional_tables (cdc-sync status lists what is mirrored).",
            missing=tuple(missing), requested=tuple(required),
        )
    ordered: list[str] = []
    for name in [*selected, *required]:
        if name not in ordered:
            ordered.append(name)
    return ordered, warnings


def _column_options(config: SyncConfig, table: str, option: frozenset[tuple[str, str]]) -> set[str]:
    return {column for table_name, column in option if table_name == table}


def validate_column_options(config: SyncConfig, schemas: dict[str, TableSchema]) -> None:
    """Every ``table.column`` in include/hash options must name a mirrored column: fail before writing."""
    for option_name, refs in (("include_columns", config.include_columns), ("hash_columns", config.hash_columns)):
        for table, column in sorted(refs):
            if table not in schemas:
                raise ConfigError(f"{option_name} names {table}.{column}, but {table} is not among the synced tables.")
            if not schemas[table].has_column(column):
                raise ConfigError(f"{option_name} names {table}.{column}, but {table} has no column {column}.")


def _merge_key(schema: TableSchema, knowledge: catalog.TableKnowledge, kept: set[str]) -> tuple[str, ...]:
    for key in knowledge.natural_keys:
        if all(name in kept for name in key):
            return key
    if schema.primary_key and all(name in kept for name in schema.primary_key):
        return schema.primary_key
    for key in schema.unique_keys:
        if all(name in kept and not schema.column(name).nullable for name in key):
            return key
    return ()


def plan_table(schema: TableSchema, config: SyncConfig, *, row_versions: bool = False) -> TablePlan:
    """``row_versions``: the source can find changed rows without a column (PostgreSQL's xmin)."""
    knowledge = catalog.knowledge(schema.name)
    included = _column_options(config, schema.name, config.include_columns)
    secrets = secret_columns(schema.name, schema.column_names, included)
    excluded = secrets.excluded
    hashed = _column_options(config, schema.name, config.hash_columns)
    # A hashed column holds a hex digest whatever its source type.
    kept_columns = tuple(
        replace(c, logical_type=LogicalType.TEXT) if c.name in hashed else c
        for c in schema.columns
        if c.name not in excluded
    )
    kept = {c.name for c in kept_columns}
    table = TableSchema(schema.name, kept_columns, schema.primary_key, schema.unique_keys)
    merge_key = _merge_key(schema, knowledge, kept)
    strategy: Strategy = "full"
    cursor = None
    if merge_key:
        for candidate in knowledge.cursors:
            if candidate in kept and table.column(candidate).logical_type in TIMESTAMP_TYPES:
                strategy, cursor = "incremental", candidate
                break
        else:
            appended = knowledge.append_only_id
            if appended in kept and table.column(appended).logical_type is LogicalType.INTEGER:
                strategy, cursor = "append", appended
            elif row_versions:
                strategy = "row_version"
    return TablePlan(
        table=table,
        strategy=strategy,
        cursor=cursor,
        merge_key=merge_key,
        delete_mode=config.delete_mode(schema.name),
        hashed_columns=frozenset(hashed),
        excluded_columns=excluded,
        may_become_empty=knowledge.may_become_empty,
        excluded_by_name=secrets.by_name_only,
    )
