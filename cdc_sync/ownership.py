"""What a cycle may touch: a source that is an Airflow metadata database, and only the warehouse tables it made.

* **The source.** A database is taken for an Airflow metadata database when the schema read holds Alembic's
  ``alembic_version`` table and Airflow's core tables ``dag``, ``dag_run`` and ``task_instance`` (every Airflow
  version from 2.x to 3.x has all four). The revision in ``alembic_version`` is not compared with a list of known
  ones: each Airflow release adds revisions, so such a list would refuse the next Airflow, while the core tables are
  what a mirror is made of. Any other database is refused before the warehouse is opened, so nothing is written:
  no schema, no state tables, no claim on the schema in ``_cdc_meta``.
* **The warehouse.** A table of a mirrored table's name is adopted only if cdc_sync created it: its watermark
  records a committed cycle, or it carries both bookkeeping columns (``_cdc_synced_at``, ``_cdc_deleted_at``),
  which a mirror gets in the statement that creates it. Any other table (a team's own ``dag``) is refused before
  anything is written for it, with no state row either: a later cycle refuses it again instead of adopting it.
  The other tables carry on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from cdc_sync import catalog
from cdc_sync.destinations.dialect import DELETED_AT, SYNCED_AT, Dialect
from cdc_sync.errors import ForeignTableError, NotAnAirflowDatabaseError
from cdc_sync.plan import TablePlan
from cdc_sync.report import TableReport
from cdc_sync.sources import Source
from cdc_sync.state import Watermark

log = logging.getLogger("cdc_sync")

BOOKKEEPING_COLUMNS = frozenset({SYNCED_AT, DELETED_AT})


def missing_airflow_tables(tables: Iterable[str]) -> list[str]:
    """The tables that identify an Airflow metadata database (see the module docstring) absent from ``tables``."""
    present = set(tables)
    return [name for name in (catalog.MIGRATION_TABLE, *catalog.CORE_TABLES) if name not in present]


def require_airflow_source(source: Source, tables: Iterable[str]) -> None:
    """Refuse a source that is not an Airflow metadata database; ``tables`` is its :meth:`Source.list_tables`."""
    missing = missing_airflow_tables(tables)
    if missing:
        raise NotAnAirflowDatabaseError(
            f"The source {source.location()} is not an Airflow metadata database: it lacks {', '.join(missing)}, "
            "which every Airflow database has. Point the source at Airflow's metadata database. "
            f"{source.other_schema_hint}"
        )


def created_by_cdc_sync(watermark: Watermark | None, columns: Iterable[str]) -> bool:
    """Whether a warehouse table is a mirror: a committed cycle recorded it, or it has the bookkeeping columns.

    ``columns`` are the table's column names, lower-cased (as :func:`cdc_sync.drift.schema_mirror_columns` keeps
    them)."""
    if watermark is not None and watermark.last_success_at is not None:
        return True
    return set(columns) >= BOOKKEEPING_COLUMNS


def refuse_foreign_tables(plans: list[TablePlan], watermarks: dict[str, Watermark],
                          schema_columns: dict[str, dict[str, str]], dialect: Dialect,
                          schema: str) -> tuple[list[TablePlan], list[TableReport]]:
    """Split the plans into those whose warehouse table is absent or a mirror, and failed reports for the rest.

    ``schema_columns`` is :func:`cdc_sync.drift.schema_mirror_columns` of the destination schema."""
    owned: list[TablePlan] = []
    refused: list[TableReport] = []
    for plan in plans:
        columns = schema_columns.get(dialect.fold(plan.name).lower())
        if not columns or created_by_cdc_sync(watermarks.get(plan.name), columns):
            owned.append(plan)
            continue
        error = ForeignTableError(
            f"Table {schema}.{plan.name} already exists in the warehouse and was not created by cdc_sync (no "
            f"{SYNCED_AT}/{DELETED_AT} columns, no watermark): it is left untouched and {plan.name} is not synced. "
            "Mirror into another schema (--schema / destination_schema), or rename or drop that table if it is "
            "yours to change."
        )
        log.error("%s failed: %s", plan.name, error)
        refused.append(TableReport(table=plan.name, strategy=plan.strategy, status="failed", error=str(error)))
    return owned, refused
