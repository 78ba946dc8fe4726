"""One sync cycle: plan → read → stage → MERGE + deletes + watermark, committed together per table.

Exactly once: everything a table's cycle writes (rows, deletions, its watermark and its run record) commits in
one destination transaction. A failure anywhere before that commit leaves the mirror as it was, and the next cycle
re-reads from the unchanged watermark. Re-read rows are deduplicated and unchanged rows are not rewritten, so the
overlap that protects late commits costs no duplicates. (A read filtered by row version returns only rows written
since the last read; the MERGE updates those without comparing columns, see
:meth:`cdc_sync.sources.SourceSnapshot.reads_only_rewritten_rows`.)
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import datetime

import pyarrow as pa
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from cdc_sync.config import SyncConfig
from cdc_sync.deletes import SourceCount, reconcile_deletes
from cdc_sync.destinations import dialect_for, open_destination
from cdc_sync.destinations.base import Destination
from cdc_sync.drift import known_mirror_columns, prepare_mirror_table, schema_mirror_columns
from cdc_sync.errors import CdcSyncError, ConfigError, CycleAlreadyRunningError, TransientDestinationError
from cdc_sync.guards import SourceWasReset, guard_table, reset_warning, source_was_reset, vanished_table_warnings
from cdc_sync.lanes import run_in_lanes
from cdc_sync.plan import CURSOR_STRATEGIES, TablePlan, plan_table, select_tables, validate_column_options
from cdc_sync.positions import format_mark, mark_row_key, next_position, start_position
from cdc_sync.report import CycleReport, TableReport
from cdc_sync.sources import (
    Source,
    SourceSnapshot,
    open_source,
)
from cdc_sync.state import RunRecord, StateStore, Watermark, utc_now
from cdc_sync.transform import Tally, hash_columns, take_rows

log = logging.getLogger("cdc_sync")

TableCallback = Callable[[TableReport], None]
# Rows staged per MERGE when a table is read in full into a non-empty mirror: bounds memory, amortises each MERGE.
MERGE_CHUNK_ROWS = 250_000


class TableCycle:
    """The work for one table inside one destination transaction."""

    def __init__(self, config: SyncConfig, destination: Destination, state: StateStore, cycle_id: str) -> None:
        self.config = config
        self.destination = destination
        self.dialect = destination.dialect
        self.state = state
        self.schema = config.schema
        self.cycle_id = cycle_id

    def run(self, plan: TablePlan, snapshot: SourceSnapshot, previous: Watermark | None, full: bool,
            report: TableReport, clock_started: float, mirror_columns: dict[str, str] | None = None,
            check_reset: bool = False) -> Watermark:
        """``check_reset``: after an incremental read, raise :class:`cdc_sync.guards.SourceWasReset` (before
        anything commits) when no source row reaches the previous watermark any more."""
        destination, dialect, schema = self.destination, self.dialect, self.schema
        started = utc_now()
        horizon = snapshot.horizon
        key_changed = previous is not None and previous.merge_key not in (None, plan.merge_key_text)
        cursor_changed = previous is not None and previous.cursor_column != plan.cursor
        full = full or key_changed or cursor_changed
        position = start_position(plan, previous, horizon, self.config.lookback_seconds, full)
        destination.begin()
        # New columns come with previous=None from cdc_sync.guards (a full re-read), so no row is left without them.
        prepare_mirror_table(destination, schema, plan, mirror_columns)
        staging = dialect.staging_name(plan.name)
        tally = Tally(plan.cursor, plan.merge_key if plan.strategy in CURSOR_STRATEGIES else ())
        batches: Iterable = tally.watch(snapshot.read_rows(plan.table, position.where))
        if plan.hashed_columns:
            batches = hash_columns(batches, plan.hashed_columns)
        read_everything = position.where is None
        live_rows: int | None = None
        if not plan.merge_key:
            destination.execute(dialect.delete_all(schema, plan.name))
            report.rows_written = self._append(plan, staging, batches, started)
        elif read_everything and not destination.scalar(dialect.count_all(schema, plan.name)):
            # A first load: keys are unique within one snapshot, so rows go straight into the empty mirror, with
            # no MERGE and no staging of the whole table.
            report.rows_written = self._append(plan, staging, batches, started)
        else:
            source_count = SourceCount(snapshot, plan, needed=not read_everything and plan.delete_mode != "ignore")
            try:
                report.rows_written = self._merge_in_chunks(
                    plan, staging, batches, started, on_read_end=source_count.start,
                    compare_rows=not snapshot.reads_only_rewritten_rows(position.where),
                )
                if check_reset and not read_everything:
                    source_count.settle()  # the probe needs the source connection
                    if source_was_reset(snapshot, plan, previous, newest_read=tally.maximum):
                        raise SourceWasReset(plan.name)
                report.rows_deleted, live_rows = reconcile_deletes(
                    destination, schema, plan, snapshot, tally.rows if read_everything else source_count,
                    report, started,
                )
            finally:
                source_count.settle()
        report.rows_read = tally.rows
        if live_rows is None:
            live_rows = int(destination.scalar(dialect.count_live(schema, plan.name)))
        position = next_position(plan, position, horizon, tally.maximum)
        row_at_mark = mark_row_key(plan, previous, tally, position.high_water_mark)
        finished = utc_now()
        report.seconds = round(time.monotonic() - clock_started, 3)
        report.high_water_mark = format_mark(position.high_water_mark)
        watermark = Watermark(
            table_name=plan.name,
            strategy=plan.strategy,
            cursor_column=plan.cursor,
            high_water_mark=report.high_water_mark,
            pending_high_water_mark=format_mark(position.pending),
            pending_read_at=position.pending_read_at,
            merge_key=plan.merge_key_text,
            delete_mode=plan.delete_mode,
            last_attempt_at=started,
            last_success_at=finished,
            last_rows_read=report.rows_read,
            last_rows_written=max(report.rows_written, 0),
            last_rows_deleted=report.rows_deleted,
            live_rows=live_rows,
            lag_seconds=round((finished - horizon.safe_until).total_seconds(), 3),
            last_error=None,
            row_version=None if horizon.row_version is None else str(horizon.row_version),
            mark_row_key=row_at_mark,
        )
        self.state.save_watermark(watermark)
        self.state.record_run(self._run_record(plan, report, started, finished))
        destination.commit()
        return watermark

    def _append(self, plan: TablePlan, staging: str, batches: Iterable[pa.RecordBatch], synced_at: datetime) -> int:
        """Rows into a mirror that holds none of them (the destination may pass them through its staging table)."""
        destination, dialect = self.destination, self.dialect
        destination.execute(dialect.drop_staging(staging))
        destination.execute(dialect.create_staging(staging, plan.columns))
        written = destination.append(self.schema, plan.name, staging, plan.columns, batches, synced_at)
        destination.execute(dialect.drop_staging(staging))
        return written

    def _merge_in_chunks(self, plan: TablePlan, staging: str, batches: Iterable[pa.RecordBatch],
                         synced_at: datetime, on_read_end: Callable[[], None], compare_rows: bool) -> int:
        """Stage and MERGE a bounded number of rows at a time, so memory does not grow with the table.

        ``on_read_end`` is called once the source stream is exhausted, before the last MERGE finishes. A read that
        brings no row (the usual no-change cycle) creates no staging table at all."""
        destination, dialect = self.destination, self.dialect
        remaining = _notify_when_exhausted(batches, on_read_end)
        first = next(remaining, None)
        if first is None:
            return 0
        remaining = itertools.chain([first], remaining)
        merge = dialect.merge(self.schema, plan.name, staging, plan.column_names, plan.merge_key, plan.cursor,
                              plan.nullable_key, synced_at, compare_rows)
        destination.execute(dialect.drop_staging(staging))
        destination.execute(dialect.create_staging(staging, plan.columns))
        written = 0
        while True:
            loaded = destination.load(staging, plan.columns, take_rows(remaining, MERGE_CHUNK_ROWS))
            exhausted = loaded < MERGE_CHUNK_ROWS
            if loaded:
                written += max(destination.execute(merge), 0)
            if exhausted:
                destination.execute(dialect.drop_staging(staging))
                return written
            destination.execute(dialect.empty_table(staging))

    def _run_record(self, plan: TablePlan, report: TableReport, started: datetime, finished: datetime) -> RunRecord:
        return RunRecord(
            cycle_id=self.cycle_id, table_name=plan.name, started_at=started, finished_at=finished,
            status=report.status, strategy=plan.strategy, rows_read=report.rows_read,
            rows_written=max(report.rows_written, 0), rows_deleted=report.rows_deleted, seconds=report.seconds,
            high_water_mark=report.high_water_mark, error=report.error,
        )

    def record_failure(self, plan: TablePlan, previous: Watermark | None, report: TableReport,
                       started: datetime) -> None:
        finished = utc_now()
        watermark = previous or Watermark(table_name=plan.name, strategy=plan.strategy, cursor_column=plan.cursor,
                                          merge_key=plan.merge_key_text, delete_mode=plan.delete_mode)
        watermark = replace(watermark, last_attempt_at=started, last_error=report.error)
        try:
            self.state.record_failure(watermark, self._run_record(plan, report, started, finished))
        except CdcSyncError as error:
            log.error("Could not record the failure of %s: %s", plan.name, error)


def _notify_when_exhausted(batches: Iterable[pa.RecordBatch], callback: Callable[[], None]) -> Iterator[pa.RecordBatch]:
    """The batches, then ``callback()`` once the source stream has ended (its read, e.g. a COPY, is finished)."""
    yield from batches
    callback()


def _retrying(function: Callable[[], Watermark]) -> Watermark:
    """Transient destination failures (dropped connections, serialization) are retried with backoff."""
    return retry(
        retry=retry_if_exception_type(TransientDestinationError),
        stop=stop_after_attempt(3),
        wait=wait_exponential(multiplier=0.5, max=10),
        reraise=True,
    )(function)()


def run_cycle(config: SyncConfig, *, resync: bool = False, only_tables: Iterable[str] | None = None,
              on_table: TableCallback | None = None) -> CycleReport:
    """Run one cycle over the selected tables. Tables fail independently; the report says which did."""
    dialect_for(config.destination_url).validate_schema_name(config.schema)
    report = CycleReport(cycle_id=uuid.uuid4().hex, schema=config.schema, started_at=utc_now())
    with open_source(config.source_url) as source:
        available = source.list_tables()
        tables, warnings = select_tables(config, available)
        report.warnings.extend(warnings)
        for warning in warnings:
            log.warning(warning)
        plans = _plans(config, source, tables)
        resync_only = set(only_tables or ())
        unknown = resync_only - {plan.name for plan in plans}
        if unknown:
            raise ConfigError(
                f"--table {', '.join(sorted(unknown))} is not among the synced tables: name one of "
                f"{', '.join(plan.name for plan in plans)}."
            )
        if resync_only:
            plans = [plan for plan in plans if plan.name in resync_only]
        if source.open_writes_hint:
            with source.snapshot() as snapshot:
                if not snapshot.horizon.sees_open_writes:
                    report.warnings.append(
                        "The source role cannot see other sessions' open transactions, so late commits are covered "
                        f"only by the {config.lookback_seconds:g} s lookback: {source.open_writes_hint}."
                    )
        with open_destination(config.destination_url, config.destination_options) as destination:
            if not destination.try_lock(config.schema):
                raise CycleAlreadyRunningError(
                    f"Another cycle is running on schema {config.schema!r}: wait for it to finish (cdc-sync status "
                    "shows its progress); cycles of one schema never overlap."
                )
            try:
                state = StateStore(destination, config.schema)
                state.migrate()
                state.claim_source(source.identity(), allow_foreign=config.allow_foreign_source)
                watermarks = state.watermarks()
                report.warnings.extend(vanished_table_warnings(watermarks, {p.name for p in plans},
                                                               set(available)))
                cycle = TableCycle(config, destination, state, report.cycle_id)
                # Each table's mirror columns, read here for all at once; a table's first attempt takes its own.
                known_columns = schema_mirror_columns(destination, config.schema)
                lanes = _lane_count(config, destination, plans, watermarks, resync)
                if lanes > 1:
                    report.tables.extend(_sync_in_lanes(config, cycle, source, plans, watermarks, on_table, lanes,
                                                        known_columns))
                else:
                    for plan in plans:
                        table_report = _sync_one(cycle, source, plan, watermarks.get(plan.name), resync,
                                                 known_columns)
                        report.tables.append(table_report)
                        if on_table:
                            on_table(table_report)
            finally:
                destination.unlock(config.schema)
    report.finished_at = utc_now()
    return report


def _lane_count(config: SyncConfig, destination: Destination, plans: list[TablePlan],
                watermarks: dict[str, Watermark], resync: bool) -> int:
    """Tables run side by side only in cycles of an already mirrored schema: there every table's work is bounded
    (changes since its watermark), while first loads and resyncs stream whole tables one at a time, in the memory
    budget of one table."""
    mirrored = all(plan.name in watermarks and watermarks[plan.name].last_success_at is not None for plan in plans)
    if resync or not mirrored or len(plans) < 2 or not destination.supports_concurrent_tables:
        return 1
    return min(config.parallel_tables, len(plans))


def _sync_in_lanes(config: SyncConfig, cycle: TableCycle, source: Source, plans: list[TablePlan],
                   watermarks: dict[str, Watermark], on_table: TableCallback | None, lanes: int,
                   known_columns: dict[str, dict[str, str]]) -> list[TableReport]:
    """Sync the tables on ``lanes`` lanes, the largest first; reports come back in plan order.

    The first lane uses the cycle's own connections (which hold the schema lock); every other lane opens a source
    and a warehouse connection of its own. If one cannot be opened, the cycle goes on with the lanes it has."""
    callback_lock = threading.Lock()

    def lane(lane_cycle: TableCycle, lane_source: Source) -> Callable[[TablePlan], TableReport]:
        def sync(plan: TablePlan) -> TableReport:
            table_report = _sync_one(lane_cycle, lane_source, plan, watermarks.get(plan.name), False, known_columns)
            if on_table:
                with callback_lock:
                    on_table(table_report)
            return table_report
        return sync

    with contextlib.ExitStack() as connections:
        workers = [lane(cycle, source)]
        for _ in range(lanes - 1):
            try:
                lane_source = connections.enter_context(open_source(config.source_url))
                lane_destination = connections.enter_context(
                    open_destination(config.destination_url, config.destination_options)
                )
            except CdcSyncError as error:
                log.warning("Syncing with %d table(s) at a time: another connection could not be opened: %s",
                            len(workers), error)
                break
            lane_destination.share_with_concurrent_tables()
            workers.append(lane(TableCycle(config, lane_destination, StateStore(lane_destination, config.schema),
                                           cycle.cycle_id), lane_source))
        if len(workers) > 1:
            cycle.destination.share_with_concurrent_tables()
        # Largest mirror first, so that the small tables fill the other lanes meanwhile.
        by_size = sorted(plans, key=lambda plan: -(watermarks[plan.name].live_rows or 0))
        reports = {table_report.table: table_report for table_report in run_in_lanes(by_size, workers)}
    return [reports[plan.name] for plan in plans]


def _plans(config: SyncConfig, source: Source, tables: list[str]) -> list[TablePlan]:
    schemas = source.describe_tables(tables)
    validate_column_options(config, schemas)
    return [plan_table(schemas[name], config, row_versions=source.has_row_versions) for name in tables]


def _sync_one(cycle: TableCycle, source: Source, plan: TablePlan, previous: Watermark | None,
              full: bool, known_columns: dict[str, dict[str, str]] | None = None) -> TableReport:
    """Sync one table, retrying transient failures. ``known_columns`` is the schema's mirror columns as read at
    the start of the cycle (a table absent from it has no mirror yet); only the first attempt trusts it."""
    report = TableReport(table=plan.name, strategy="full" if full and plan.strategy != "full" else plan.strategy)
    started = utc_now()
    clock_started = time.monotonic()
    first_columns = None if known_columns is None else known_mirror_columns(cycle.destination, known_columns,
                                                                             plan.name)

    def attempt() -> Watermark:
        nonlocal clock_started, first_columns
        clock_started = time.monotonic()
        report.warnings.clear()
        columns, first_columns = first_columns, None  # a retry reads them again: the attempt may have changed them
        with source.snapshot() as snapshot:
            # Upgrades and resets (cdc_sync.guards): may turn this cycle of the table into a full re-read.
            decision = guard_table(cycle.destination, cycle.schema, snapshot, plan, previous, full, report.warnings,
                                   columns)
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
        _retrying(attempt)
        log.info("%s: %s, %d read, %d written, %d deleted, %.2fs", plan.name, report.strategy, report.rows_read,
                 max(report.rows_written, 0), report.rows_deleted, report.seconds)
    except CdcSyncError as error:
        report.status, report.error = "failed", str(error)
        report.seconds = round(time.monotonic() - clock_started, 3)
        log.error("%s failed: %s", plan.name, error)
        cycle.record_failure(plan, previous, report, started)
    for warning in report.warnings:
        log.warning("%s: %s", plan.name, warning)
    return report
