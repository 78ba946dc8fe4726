"""One sync cycle over the selected tables: the source and its plans, the capture mode, the warehouse and its
locks, the log session when the cycle reads the log, then every table in its own transaction
(:class:`cdc_sync.replicate.TableCycle`), side by side in lanes where it pays.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterable

from cdc_sync import faults
from cdc_sync.capture_choice import choose_capture
from cdc_sync.config import SyncConfig
from cdc_sync.cycle_locks import CycleLocks, LogSlotBusy, open_destination_waiting
from cdc_sync.destinations import dialect_for
from cdc_sync.digests import digest_switches
from cdc_sync.drift import schema_mirror_columns
from cdc_sync.errors import ConfigError, CycleAlreadyRunningError, SlotCreationBlocked
from cdc_sync.guards import vanished_table_warnings
from cdc_sync.lanes import lane_count, sync_in_lanes
from cdc_sync.log_capture import LogSession, PublicationTaken, bound_unread_slot
from cdc_sync.ownership import require_airflow_source
from cdc_sync.plan import TablePlan, plan_table, select_tables, validate_column_options
from cdc_sync.progress import ReadProgress
from cdc_sync.replicate import TableCallback, TableCycle
from cdc_sync.report import LOCKED, CycleReport, TableReport
from cdc_sync.secrets import excluded_by_name_warning
from cdc_sync.sources import Source, open_source
from cdc_sync.sources.publication import PublishedTable
from cdc_sync.state import StateStore, Watermark, utc_now
from cdc_sync.table_turns import sync_under_lock, wait_for_locked

log = logging.getLogger("cdc_sync")


def run_cycle(config: SyncConfig, *, resync: bool = False, only_tables: Iterable[str] | None = None,
              on_table: TableCallback | None = None, progress: ReadProgress | None = None) -> CycleReport:
    """Run one cycle over the selected tables. Tables fail independently; the report says which did."""
    dialect_for(config.destination_url).validate_schema_name(config.schema)
    faults.check_environment()
    report = CycleReport(cycle_id=uuid.uuid4().hex, schema=config.schema, started_at=utc_now())
    with open_source(config.source_url) as source:
        available = source.list_tables()
        require_airflow_source(source, available)
        tables, warnings = select_tables(config, available)
        report.warnings.extend(warnings)
        for warning in warnings:
            log.warning(warning)
        plans = _plans(config, source, tables)
        capture = choose_capture(config, [PublishedTable(plan.name, plan.column_names) for plan in plans])
        if capture.mode == "query":  # a slot of this schema that nothing reads still keeps WAL: bounded here too
            report.warnings.extend(bound_unread_slot(config, source))
        published = plans  # a resync of some tables still reads the log of all
        resync_only = set(only_tables or ())
        unknown = resync_only - {plan.name for plan in plans}
        if unknown:
            raise ConfigError(
                f"--table {', '.join(sorted(unknown))} is not among the synced tables: name one of "
                f"{', '.join(plan.name for plan in plans)}."
            )
        if resync_only:
            plans = [plan for plan in plans if plan.name in resync_only]
        for plan in (plan for plan in plans if plan.excluded_by_name):
            report.warnings.append(excluded_by_name_warning(plan.name, plan.excluded_by_name))
            log.warning(report.warnings[-1])
        if source.open_writes_hint:
            with source.snapshot() as snapshot:
                if not snapshot.horizon.sees_open_writes:
                    report.warnings.append(
                        "The source role cannot see other sessions' open transactions, so late commits are covered "
                        f"only by the {config.lookback_seconds:g} s lookback: {source.open_writes_hint}."
                    )
        with open_destination_waiting(config) as destination, CycleLocks(config) as locks:
            state = StateStore(destination, config.schema)
            with locks.schema_section():
                state.migrate()
                destination.use_schema(config.schema)  # the state tables exist: Redshift's writes may lock them
                state.claim_source(source.identity(), allow_foreign=config.allow_foreign_source)
            with contextlib.ExitStack() as log_hold:
                log_session = None
                if capture.mode == "log":
                    log_session, slot_dropped = _open_log_session(config, locks, published, report.warnings,
                                                                  log_hold)
                    resync = resync or slot_dropped  # a dropped slot's positions are gone
                # What the cycle plans with; each table's own state is read again once its lock is held.
                watermarks = state.watermarks()
                report.warnings.extend(vanished_table_warnings(watermarks, {p.name for p in plans}, set(available)))
                cycle = TableCycle(config, destination, state, report.cycle_id)
                cycle.progress = progress
                cycle.log_session = log_session
                cycle.digest_switches = frozenset(digest_switches(
                    {plan.name: plan.hashed_columns for plan in plans if plan.hashed_columns}, state.meta(),
                    (name for name, mark in watermarks.items() if mark.last_success_at), cycle.digest,
                    resync=resync))
                # Each table's mirror columns, read here for all at once; a table's first attempt takes its own.
                known_columns = schema_mirror_columns(destination, config.schema)
                report.tables.extend(_sync_tables(config, locks, cycle, source, plans, watermarks, known_columns,
                                                  resync, on_table))
                if log_session is not None:
                    log_session.advance(state.watermarks())
    report.finished_at = utc_now()
    return report


def _open_log_session(config: SyncConfig, locks: CycleLocks, plans: list[TablePlan], warnings: list[str],
                      hold: contextlib.ExitStack) -> tuple[LogSession | None, bool]:
    """The cycle's log session, held in ``hold`` with the schema's slot lock (one slot per schema: the cycle that
    reads it holds it until the slot has advanced), and whether the slot was dropped (its positions are gone).
    ``capture=auto`` goes on in the watermark mode (None, False) when another table set or cycle has the slot, or
    when the slot cannot be made yet."""
    try:
        hold.enter_context(locks.log_slot_section(wait=config.capture == "log"))
        session = LogSession.open(config, plans, warnings)
    except (PublicationTaken, LogSlotBusy) as taken:
        hold.close()  # the slot's lock: this cycle does not read the log
        log.info("capture=auto uses the watermark mode: %s", taken)
        return None, False
    except SlotCreationBlocked as blocked:
        hold.close()
        if config.capture == "log":
            raise SlotCreationBlocked(
                f"{blocked}. End that transaction, or wait for it, then run the cycle again; "
                "`cdc-sync capture setup` makes the slot however long it has to wait.") from None
        log.info("capture=auto uses the watermark mode this cycle: %s; the next cycle tries again", blocked)
        return None, False
    if session is None:
        return None, True
    hold.callback(session.close)
    return session, False


def _sync_tables(config: SyncConfig, locks: CycleLocks, cycle: TableCycle, source: Source, plans: list[TablePlan],
                 watermarks: dict[str, Watermark], known_columns: dict[str, dict[str, str]], resync: bool,
                 on_table: TableCallback | None) -> list[TableReport]:
    """Every table under its own lock, in lanes when there are several; a table another cycle holds is waited
    for up to ``lock_wait_seconds``, then left to it."""

    def sync_locked(lane_cycle: TableCycle, lane_source: Source, plan: TablePlan) -> TableReport:
        return sync_under_lock(locks, lane_cycle, lane_source, plan, watermarks.get(plan.name), resync,
                               known_columns)

    def announce(table_report: TableReport) -> None:
        if on_table and table_report.status != LOCKED:
            on_table(table_report)

    def sync_announced(lane_cycle: TableCycle, lane_source: Source, plan: TablePlan) -> TableReport:
        table_report = sync_locked(lane_cycle, lane_source, plan)
        announce(table_report)
        return table_report

    lanes = lane_count(config, cycle.destination, plans, watermarks, resync)
    if lanes > 1:
        reports = sync_in_lanes(config, cycle, source, plans, watermarks, announce, lanes, sync_locked)
    else:
        reports = [sync_announced(cycle, source, plan) for plan in plans]
    reports = wait_for_locked(reports, plans, sync_announced, cycle, source, config.lock_wait_seconds)
    if plans and all(table_report.status == LOCKED for table_report in reports):
        raise CycleAlreadyRunningError(
            f"Another cycle is syncing {', '.join(plan.name for plan in plans)} in schema "
            f"{config.schema!r}: wait for it to finish (cdc-sync status shows its progress), or give "
            "lock_wait_seconds; two cycles never write one table at the same time."
        )
    return reports


def _plans(config: SyncConfig, source: Source, tables: list[str]) -> list[TablePlan]:
    schemas = source.describe_tables(tables)
    validate_column_options(config, schemas)
    return [plan_table(schemas[name], config, row_versions=source.has_row_versions) for name in tables]
