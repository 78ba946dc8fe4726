"""One table's sync within a cycle: checks, the attempt, retries of transient failures, the failure recorded.

A transient destination failure (a dropped connection, a serialization conflict, a lock timeout) rolls the
attempt back and runs it again, at most :data:`ATTEMPTS` times in all; each attempt starts from the same
watermark, so a retry neither loses nor repeats rows. Any other failure, or the last transient one, fails the
table alone: its error is recorded in its watermark and run history, and the cycle goes on with the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from cdc_sync.drift import known_mirror_columns
from cdc_sync.errors import CdcSyncError, TransientDestinationError
from cdc_sync.guards import SourceWasReset, guard_table, reset_warning
from cdc_sync.plan import TablePlan
from cdc_sync.report import TableReport
from cdc_sync.sources import Source
from cdc_sync.state import Watermark, utc_now
from cdc_sync.urls import scrub

if TYPE_CHECKING:
    from cdc_sync.replicate import TableCycle

log = logging.getLogger("cdc_sync")

# Attempts of one table per cycle, the first included, and the first backoff (it doubles, up to 10 s).
ATTEMPTS = 3
BACKOFF_SECONDS = 0.5


def retrying(function: Callable[[], Watermark]) -> Watermark:
    """Transient destination failures (dropped connections, serialization) are retried with backoff."""
    return retry(
        retry=retry_if_exception_type(TransientDestinationError),
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_exponential(multiplier=BACKOFF_SECONDS, max=10),
        reraise=True,
    )(function)()


def sync_table(cycle: TableCycle, source: Source, plan: TablePlan, previous: Watermark | None,
               full: bool, known_columns: dict[str, dict[str, str]] | None = None) -> TableReport:
    """Sync one table, retrying transient failures. ``known_columns`` is the schema's mirror columns as read at
    the start of the cycle (a table absent from it has no mirror yet); only the first attempt trusts it."""
    report = TableReport(table=plan.name, strategy="full" if full and plan.strategy != "full" else plan.strategy)
    started = utc_now()
    clock_started = time.monotonic()
    first_columns = None if known_columns is None else known_mirror_columns(cycle.destination, known_columns,
                                                                             plan.name)

    stored = previous  # the watermark in the state table, as the last attempt's checks left it

    def attempt() -> Watermark:
        nonlocal clock_started, first_columns, stored
        clock_started = time.monotonic()
        report.warnings.clear()
        columns, first_columns = first_columns, None  # a retry reads them again: the attempt may have changed them
        with source.snapshot() as snapshot:
            # Upgrades and resets (cdc_sync.guards): may turn this cycle of the table into a full re-read.
            decision = guard_table(cycle.destination, cycle.schema, snapshot, plan, stored, full, report.warnings,
                                   columns)
            stored = decision.stored or stored
            try:
                try:
                    return cycle.run(plan, snapshot, decision.previous, decision.read_in_full, report, clock_started,
                                     decision.mirror_columns, check_reset=decision.check_reset_after_read)
                except SourceWasReset:
                    cycle.destination.rollback()
                    report.warnings.append(reset_warning(plan, decision.previous))  # type: ignore[arg-type]
                    return cycle.run(plan, snapshot, decision.previous, True, report, clock_started,
                                     decision.mirror_columns)
            except BaseException:
                cycle.destination.rollback()
                raise

    try:
        retrying(attempt)
        log.info("%s: %s, %d read, %d written, %d deleted, %.2fs", plan.name, report.strategy, report.rows_read,
                 max(report.rows_written, 0), report.rows_deleted, report.seconds)
    except CdcSyncError as error:
        config = cycle.config
        report.status, report.error = "failed", scrub(str(error), config.source_url, config.destination_url,
                                                      secrets=config.destination_options.values())
        report.seconds = round(time.monotonic() - clock_started, 3)
        log.error("%s failed: %s", plan.name, report.error)
        cycle.record_failure(plan, stored, report, started)
    for warning in report.warnings:
        log.warning("%s: %s", plan.name, warning)
    return report
