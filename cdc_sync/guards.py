"""Checks run before a table's cycle, for sources that changed under the mirror: Airflow upgrades and resets.

* **Upgrades** (``airflow db migrate`` from 2.x to 3.x) add columns and retype a few. A column the mirror lacks is
  filled for every row by re-reading the table in full once (merge updates only rows that differ), so no manual
  resync is needed. A column that the catalog knows an upgrade retyped beyond what the mirror column can hold
  (``dag_run.conf`` pickled bytes → JSON, naive → aware ``trigger_timeout``, …) is kept under
  :func:`cdc_sync.catalog.kept_column_name` with its history, and a fresh column takes the new type. Any other
  incompatible change still stops the table (see :mod:`cdc_sync.drift`).
* **Resets**: a source restored from a backup, or another database put at the same address, holds rows older than
  the table's watermark. When no source row reaches the watermark any more, the incremental read would miss
  every change stamped before it, so the table is re-read in full this cycle (deletes reconciled by the table's
  delete mode, so history is kept under ``soft``). A vanished newest row (e.g. its DAG deleted) triggers the same
  re-read: it costs one full read and is always correct.
* **Backfills** of added columns are remembered in the table's watermark before the column DDL, and committed,
  so a cycle that fails after the DDL (which commits on its own on Snowflake) still leaves the next cycle a full
  re-read to do.
* **Vanished tables**: a table mirrored before that no longer exists in the source (``task_fail`` after an
  upgrade to 3.x) is skipped; its mirror is kept untouched as history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from cdc_sync import catalog
from cdc_sync.destinations.base import Destination
from cdc_sync.drift import mirror_columns
from cdc_sync.plan import CURSOR_STRATEGIES, TablePlan
from cdc_sync.sources import SeenRowVersions, SourceSnapshot
from cdc_sync.state import StateStore, Watermark


def keep_retyped_columns(destination: Destination, schema: str, plan: TablePlan,
                         existing: dict[str, str]) -> list[str]:
    """Rename mirror columns that an Airflow upgrade retyped beyond what they hold; returns the kept names.

    ``existing`` is :func:`cdc_sync.drift.mirror_columns` of the table. Committed on its own: the renamed-away
    column then reads as new, so the table is re-read in full until a cycle succeeds (see :func:`missing_columns`)."""
    dialect = destination.dialect
    kept: list[str] = []
    for column in plan.columns:
        if (plan.name, column.name) not in catalog.UPGRADE_RETYPED_COLUMNS:
            continue
        reported = existing.get(dialect.fold(column.name).lower())
        target = catalog.kept_column_name(column.name)
        if reported is None or dialect.can_hold(reported, column.logical_type) or target.lower() in existing:
            continue
        kept.append(target)
        destination.begin()
        try:
            destination.execute(dialect.rename_column(schema, plan.name, column.name, target))
            destination.commit()
        except BaseException:
            destination.rollback()
            raise
    return kept


def missing_columns(destination: Destination, plan: TablePlan, existing: dict[str, str]) -> list[str]:
    """Source columns an existing mirror table lacks (empty when the mirror table does not exist yet)."""
    if not existing:
        return []
    fold = destination.dialect.fold
    return [column.name for column in plan.columns if fold(column.name).lower() not in existing]


def remember_backfill(destination: Destination, schema: str, previous: Watermark, added: list[str]) -> Watermark:
    """Record, and commit, that ``added`` columns await their backfill, before any column DDL runs.

    Where DDL commits on its own (Snowflake), a cycle that fails after its ADD COLUMN leaves the column in place:
    the next cycle would see no missing column and read only recent changes, and older rows would keep NULL. The
    mark outlives that failure, and :func:`guard_table` re-reads the table in full until a cycle commits."""
    waiting = json.loads(previous.backfill_columns) if previous.backfill_columns else []
    mark = replace(previous, backfill_columns=json.dumps(sorted({*waiting, *added})))
    destination.begin()
    try:
        StateStore(destination, schema).save_watermark(mark)
        destination.commit()
    except BaseException:
        destination.rollback()
        raise
    return mark


class SourceWasReset(Exception):
    """Raised by a table's incremental cycle that found the source behind its watermark: it is rolled back and
    the table re-read in full (see :func:`reset_warning`)."""


def cursor_reset_check_needed(plan: TablePlan, previous: Watermark | None) -> bool:
    """Whether :func:`source_was_reset` has to ask the source, for a cursor table with a watermark."""
    return (
        previous is not None and previous.high_water_mark is not None and previous.strategy == plan.strategy
        and plan.strategy in CURSOR_STRATEGIES and bool(plan.cursor) and plan.cursor == previous.cursor_column
    )


def source_was_reset(snapshot: SourceSnapshot, plan: TablePlan, previous: Watermark | None,
                     newest_read: Any = None) -> bool:
    """Whether the source fell behind the table's watermark (restored, or another database at the same place).

    When the watermark was saved, some source row reached it (a timestamp watermark never passes the newest row
    read; an id watermark is the newest id). If no row reaches it now, the source went back in time.
    ``newest_read`` is the largest cursor value the cycle has just read in this snapshot: when it reaches the
    watermark (a cycle with changes, the usual case), the source is not asked at all. Otherwise the row saved as
    reaching the mark is looked up by key, and only if it is gone is the table scanned for any such row."""
    if previous is None or previous.high_water_mark is None or previous.strategy != plan.strategy:
        return False
    if plan.strategy == "row_version":
        # A transaction counter that went backwards: another cluster (e.g. a dump restored elsewhere).
        now = snapshot.horizon.row_version
        return now is not None and now.xmin < SeenRowVersions.parse(previous.high_water_mark).xmin
    if not cursor_reset_check_needed(plan, previous):
        return False
    mark = plan.parse_mark(previous.high_water_mark)
    if newest_read is not None and newest_read >= mark:
        return False
    if previous.mark_row_key and previous.merge_key == plan.merge_key_text:
        # The row that reached the mark when it was saved, looked up by key: an index probe, not a table scan.
        values = tuple(json.loads(previous.mark_row_key))
        if len(values) == len(plan.merge_key) and snapshot.row_reaches(plan.table, plan.merge_key, values,
                                                                        plan.cursor, mark):  # type: ignore[arg-type]
            return False
    return not snapshot.reaches(plan.table, plan.cursor, mark)  # type: ignore[arg-type]


def reset_warning(plan: TablePlan, previous: Watermark) -> str:
    return (
        f"No row of {plan.name} in the source reaches the watermark {previous.high_water_mark} any more "
        "(restored from a backup, another database at this address, or its newest rows deleted): re-read in "
        "full this cycle; rows gone from the source are handled by the delete mode."
    )


def vanished_table_warnings(watermarks: dict[str, Watermark], planned: set[str], available: set[str]) -> list[str]:
    """Warnings for tables mirrored before that the source no longer has; their mirrors are left as they are."""
    return [
        f"Table {name} no longer exists in the source (dropped, or removed by an Airflow upgrade); it is skipped "
        f"and its mirror is kept as history, rows not marked deleted. Drop the warehouse table to discard it."
        for name in sorted(watermarks)
        if name not in planned and name not in available
    ]


@dataclass(frozen=True)
class GuardDecision:
    """What a table's cycle should do after the checks: its previous watermark, whether to read in full, and the
    mirror table's columns as read here (so the cycle does not ask the warehouse again)."""

    previous: Watermark | None
    read_in_full: bool
    mirror_columns: dict[str, str]
    # The cursor-table reset probe, left to the cycle: after its read it knows whether a row reaches the watermark.
    check_reset_after_read: bool = False
    # The table's watermark as the checks left it in the state table, when they wrote it (a remembered backfill):
    # a retry and a recorded failure must start from it, not from the watermark read when the cycle began.
    stored: Watermark | None = None


def guard_table(destination: Destination, schema: str, snapshot: SourceSnapshot, plan: TablePlan,
                previous: Watermark | None, full: bool, warnings: list[str],
                known_columns: dict[str, str] | None = None) -> GuardDecision:
    """Run the checks above for one table.

    ``known_columns`` is the table's :func:`cdc_sync.drift.mirror_columns` when the cycle has just read them for
    the whole schema. A backfill passes no previous watermark: the cycle then treats the table as first synced
    (full read, no "resync for history" hint), while the mirror and its history stay as they are."""
    existing = mirror_columns(destination, schema, plan.name) if known_columns is None else known_columns
    kept = keep_retyped_columns(destination, schema, plan, existing)
    if kept:
        existing = mirror_columns(destination, schema, plan.name)  # the renames changed it
        warnings.append(
            f"An Airflow upgrade changed the type of {', '.join(k.removesuffix('_airflow2') for k in kept)} in "
            f"{plan.name}: the mirror keeps the former values in {', '.join(kept)}."
        )
    added = missing_columns(destination, plan, existing) if previous is not None else []
    if added:
        stored = remember_backfill(destination, schema, previous, added)  # type: ignore[arg-type]
        warnings.append(
            f"New source column(s) {', '.join(added)}: {plan.name} is re-read in full this cycle, so every live row "
            "holds them (no resync needed)."
        )
        return GuardDecision(None, True, existing, stored=stored)
    if previous is not None and previous.backfill_columns:
        warnings.append(
            f"Column(s) {', '.join(json.loads(previous.backfill_columns))} of {plan.name} were added by a cycle that "
            "did not finish: the table is re-read in full this cycle, so every live row holds them."
        )
        return GuardDecision(None, True, existing)
    if full:
        return GuardDecision(previous, full, existing)
    if cursor_reset_check_needed(plan, previous):
        return GuardDecision(previous, full, existing, check_reset_after_read=True)
    if source_was_reset(snapshot, plan, previous):
        warnings.append(reset_warning(plan, previous))  # type: ignore[arg-type]
        return GuardDecision(previous, True, existing)
    return GuardDecision(previous, full, existing)
