"""Each table synced under its own lock: a table another cycle is syncing waits its turn, the others go on.

A cycle plans from the state it read at its start, but a table's watermark and mirror columns are read again
once its lock is held: another cycle may have committed that table in between, and only the state read under
the lock is the table's true starting point.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cdc_sync.cycle_locks import CycleLocks, keep_trying
from cdc_sync.drift import schema_mirror_columns
from cdc_sync.ownership import refuse_foreign_tables
from cdc_sync.plan import TablePlan
from cdc_sync.report import LOCKED, TableReport
from cdc_sync.sources import Source
from cdc_sync.state import RunRecord, Watermark, utc_now
from cdc_sync.table_attempts import sync_table

if TYPE_CHECKING:
    from cdc_sync.replicate import TableCycle

log = logging.getLogger("cdc_sync")

TableSync = Callable[["TableCycle", Source, TablePlan], TableReport]


def locked_report(plan: TablePlan, schema: str) -> TableReport:
    return TableReport(table=plan.name, strategy=plan.strategy, status=LOCKED,
                       error=f"Another cycle is syncing {schema}.{plan.name}: it is left to that cycle.")


def sync_under_lock(locks: CycleLocks, cycle: TableCycle, source: Source, plan: TablePlan,
                    seen: Watermark | None, full: bool, known_columns: dict[str, dict[str, str]]) -> TableReport:
    """Sync ``plan`` holding its table lock (released as soon as the table is done); a ``locked`` report,
    with nothing written, when another cycle holds it. ``seen`` is the watermark as the cycle read it at its
    start, ``known_columns`` the schema's mirror columns then."""
    if not locks.try_table(plan.name):
        return locked_report(plan, cycle.schema)
    try:
        current = cycle.state.watermarks().get(plan.name)
        if current != seen:  # another cycle wrote this table since: its mirror may have changed too
            known_columns = schema_mirror_columns(cycle.destination, cycle.schema)
        _, refused = refuse_foreign_tables([plan], {plan.name: current} if current else {}, known_columns,
                                           cycle.dialect, cycle.schema)
        if refused:
            return refused[0]
        return sync_table(cycle, source, plan, current, full, known_columns)
    finally:
        locks.release_table(plan.name)


def wait_for_locked(reports: list[TableReport], plans: list[TablePlan], sync: TableSync, cycle: TableCycle,
                    source: Source, wait_seconds: float) -> list[TableReport]:
    """Try the tables reported ``locked`` again until each is synced or ``wait_seconds`` have passed; a table
    still held then is left to the other cycle, with a run record saying so. Reports come back in plan order."""
    by_name = {report.table: report for report in reports}
    waiting = [plan for plan in plans if by_name[plan.name].status == LOCKED]
    if waiting and wait_seconds > 0:
        log.info("Waiting up to %g s for %s, which another cycle is syncing", wait_seconds,
                 ", ".join(plan.name for plan in waiting))
    deadline = time.monotonic() + wait_seconds

    def try_waiting() -> bool:
        for plan in list(waiting):
            report = sync(cycle, source, plan)
            if report.status != LOCKED:
                by_name[plan.name] = report
                waiting.remove(plan)
        return not waiting

    if waiting:
        keep_trying(try_waiting, max(0.0, deadline - time.monotonic()))
    for plan in waiting:
        report = by_name[plan.name]
        report.warnings.append(str(report.error))
        log.warning("%s skipped: %s", plan.name, report.error)
        now = utc_now()
        cycle.state.record_alone(RunRecord(
            cycle_id=cycle.cycle_id, table_name=plan.name, started_at=now, finished_at=now, status=LOCKED,
            strategy=plan.strategy, rows_read=0, rows_written=0, rows_deleted=0, seconds=0.0,
            high_water_mark=None, error=report.error,
        ))
    return [by_name[plan.name] for plan in plans]
