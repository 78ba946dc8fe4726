"""Keep a mirror table's columns in step with its source table."""

from __future__ import annotations

from cdc_sync import faults
from cdc_sync.destinations.base import Destination
from cdc_sync.destinations.dialect import DELETED_AT, SYNCED_AT, ColumnSpec
from cdc_sync.errors import SchemaDriftError
from cdc_sync.plan import TablePlan
from cdc_sync.types import LogicalType

BOOKKEEPING = (ColumnSpec(SYNCED_AT, LogicalType.TIMESTAMP_TZ), ColumnSpec(DELETED_AT, LogicalType.TIMESTAMP_TZ))


def mirror_columns(destination: Destination, schema: str, table: str) -> dict[str, str]:
    """Mirror column (lower-cased) → the type information_schema reports; empty if the table does not exist."""
    rows = destination.query(destination.dialect.table_columns(schema, table))
    return {name.lower(): data_type for name, data_type in rows}


def schema_mirror_columns(destination: Destination, schema: str) -> dict[str, dict[str, str]]:
    """:func:`mirror_columns` of every table in ``schema``, keyed by the lower-cased table name (see
    :func:`known_mirror_columns`): one catalog query per cycle instead of one per table."""
    tables: dict[str, dict[str, str]] = {}
    for table, name, data_type in destination.query(destination.dialect.schema_columns(schema)):
        tables.setdefault(table.lower(), {})[name.lower()] = data_type
    return tables


def known_mirror_columns(destination: Destination, schema_columns: dict[str, dict[str, str]],
                         table: str) -> dict[str, str]:
    """One table's entry of :func:`schema_mirror_columns`: empty when the mirror table does not exist."""
    return schema_columns.get(destination.dialect.fold(table).lower(), {})


def prepare_mirror_table(destination: Destination, schema: str, plan: TablePlan,
                         existing: dict[str, str] | None = None) -> list[str]:
    """Create the mirror table, or add the source's new columns to it. Returns the names of added columns.

    ``existing`` is :func:`mirror_columns` of the table when the caller has just read it (see
    :class:`cdc_sync.guards.GuardDecision`); otherwise it is read here. A column whose type changed into
    one the mirror's column cannot hold stops this table (and only this table).
    """
    dialect = destination.dialect
    if existing is None:
        existing = mirror_columns(destination, schema, plan.name)
    wanted = [*plan.columns, *BOOKKEEPING]
    if not existing:
        destination.execute(dialect.create_table(schema, plan.name, wanted))
        return []
    added = []
    for column in wanted:
        reported = existing.get(dialect.fold(column.name).lower())
        if reported is None:
            destination.execute(dialect.add_column(schema, plan.name, column))
            faults.point("column_ddl")
            added.append(column.name)
        elif not dialect.can_hold(reported, column.logical_type):
            raise SchemaDriftError(
                f"Column {plan.name}.{column.name} is now {column.logical_type.value} in the source, but the mirror "
                f"column is {reported}, which cannot hold it: rename the warehouse table {schema}.{plan.name} "
                f"(to keep its history) and run `cdc-sync resync --table {plan.name}`."
            )
    return added
