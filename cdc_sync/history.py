"""History tables: with ``history=True`` each mirrored table ``t`` gets ``t__history``, one row per committed
version of each row (SCD type 2), written in the same transaction as the mirror's MERGE and the watermark.

* **Log mode** (:mod:`cdc_sync.history_log`): every committed version the log holds, with its LSN and commit time;
  ``_cdc_valid_from`` is the commit time.
* **Query mode** (here): the versions each cycle saw, i.e. the mirror rows the cycle wrote or deleted. Changes
  between two cycles that a later change overwrote are not seen; ``_cdc_lsn`` and ``_cdc_commit_ts`` are NULL and
  ``_cdc_valid_from`` is the cycle's time (``_cdc_synced_at``).

A resync, a first copy and a re-read after an upgrade go through the same path: rows that differ from the mirror
become new versions, others are not versions at all. History is never emptied or dropped by cdc_sync. A history
table made for a mirror that already holds rows (history turned on later) starts with a version of each of them.
The table is ours only if it carries :data:`~cdc_sync.destinations.history_sql.HISTORY_MARKERS`: a table of that
name without them is refused, and the mirror's table with it (nothing of the table's cycle is committed).
"""

from __future__ import annotations

from cdc_sync import catalog, faults
from cdc_sync.destinations.base import Destination
from cdc_sync.destinations.history_sql import HISTORY_COLUMNS, HISTORY_MARKERS, HistorySql, history_name
from cdc_sync.drift import mirror_columns
from cdc_sync.errors import ForeignTableError, SchemaDriftError
from cdc_sync.plan import TablePlan


def history_sql(destination: Destination, schema: str, plan: TablePlan) -> HistorySql:
    return HistorySql(destination.dialect, schema, plan.name, plan.merge_key, plan.nullable_key)


def prepare_history_table(destination: Destination, schema: str, plan: TablePlan) -> bool:
    """Create the history table, or add the source's new columns to it (as :func:`cdc_sync.drift.prepare_mirror_table`
    does for the mirror); refuse a table of its name that cdc_sync did not create. True: it was created now, so it
    is to be seeded (:func:`seed_history`). Only DDL, before the cycle's data changes (Snowflake commits on DDL)."""
    dialect, name = destination.dialect, history_name(plan.name)
    existing = mirror_columns(destination, schema, name)
    wanted = [*plan.columns, *HISTORY_COLUMNS]
    if not existing:
        destination.execute(dialect.create_table(schema, name, wanted))
        return True
    if not {dialect.fold(marker).lower() for marker in HISTORY_MARKERS} <= set(existing):
        raise ForeignTableError(
            f"Table {schema}.{name} already exists in the warehouse and was not created by cdc_sync (no "
            f"{', '.join(sorted(HISTORY_MARKERS))} columns): it is left untouched, and {plan.name} is not synced with "
            "history=True. Rename or drop that table if it is yours to change, or mirror into another schema."
        )
    for column in wanted:
        reported = existing.get(dialect.fold(column.name).lower())
        kept = catalog.kept_column_name(column.name)
        if (reported is not None and not dialect.can_hold(reported, column.logical_type)
                and (plan.name, column.name) in catalog.UPGRADE_RETYPED_COLUMNS
                and dialect.fold(kept).lower() not in existing):
            # An Airflow upgrade retyped it: the older versions keep their values under the name the mirror uses
            # (cdc_sync.guards.keep_retyped_columns), and a fresh column takes the new type.
            destination.execute(dialect.rename_column(schema, name, column.name, kept))
            reported = None
        if reported is None:
            destination.execute(dialect.add_column(schema, name, column))
        elif not dialect.can_hold(reported, column.logical_type):
            raise SchemaDriftError(
                f"Column {plan.name}.{column.name} is now {column.logical_type.value} in the source, but the history "
                f"column {schema}.{name}.{column.name} is {reported}, which cannot hold it: rename that column (to "
                "keep its values), and the next cycle adds it afresh."
            )
    return False


def seed_history(destination: Destination, schema: str, plan: TablePlan, synced_at: object) -> None:
    """A new history table of a mirror that already holds rows (history turned on later) starts with a version of
    each live row this cycle did not write (those it wrote get theirs from the cycle), valid from its last write."""
    destination.execute(history_sql(destination, schema, plan).seed(plan.column_names, synced_at))


def record_query_versions(destination: Destination, schema: str, plan: TablePlan, synced_at: object,
                          rows_deleted: int) -> None:
    """The versions a query-mode cycle (or a first copy in the log mode) wrote into the mirror: after its MERGE and
    delete pass, before its watermark. Hard deletes leave no mirror row to read, so when the cycle deleted rows
    under ``deletes="hard"``, open versions without a live mirror row get their ``delete`` version too."""
    sql = history_sql(destination, schema, plan)
    destination.execute(sql.record_written(plan.column_names, synced_at))
    destination.execute(sql.close_written(synced_at))
    if rows_deleted and plan.delete_mode == "hard":
        destination.execute(sql.record_absent(plan.column_names, synced_at))
        destination.execute(sql.close_absent(synced_at))
    faults.point("history")
