"""One table's work in a sync cycle: read → stage → MERGE + deletes + watermark, committed together
(:mod:`cdc_sync.cycle` runs the cycle over every table).

Exactly once: everything a table's cycle writes (rows, deletions, its watermark and its run record) commits in
one destination transaction. A failure anywhere before that commit leaves the mirror as it was, and the next cycle
re-reads from the unchanged watermark. Re-read rows are deduplicated and unchanged rows are not rewritten, so the
overlap that protects late commits costs no duplicates. (A read filtered by row version returns only rows written
since the last read; the MERGE updates those without comparing columns, see
:meth:`cdc_sync.sources.SourceSnapshot.reads_only_rewritten_rows`.)
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import datetime

import pyarrow as pa

from cdc_sync import faults
from cdc_sync.capture import capture_for
from cdc_sync.config import SyncConfig
from cdc_sync.deletes import SourceCount, deletions_since, reconcile_deletes
from cdc_sync.destinations.base import Destination
from cdc_sync.digests import digest_for, meta_key
from cdc_sync.drift import prepare_mirror_table
from cdc_sync.errors import CdcSyncError
from cdc_sync.guards import SourceWasReset, source_was_reset
from cdc_sync.history import prepare_history_table, record_query_versions, seed_history
from cdc_sync.history_log import record_log_versions
from cdc_sync.log_apply import apply_log_changes
from cdc_sync.log_capture import LogSession
from cdc_sync.plan import CURSOR_STRATEGIES, TablePlan
from cdc_sync.positions import format_mark, mark_row_key
from cdc_sync.progress import ReadProgress, track
from cdc_sync.report import TableReport
from cdc_sync.sources import (
    SourceSnapshot,
)
from cdc_sync.state import RunRecord, StateStore, Watermark, utc_now
from cdc_sync.transform import Tally, hash_columns, take_rows

log = logging.getLogger("cdc_sync")

TableCallback = Callable[[TableReport], None]
# Rows staged per MERGE when a table is read in full into a non-empty mirror: bounds memory, amortises each MERGE.
MERGE_CHUNK_ROWS = 250_000


class TableCycle:
    """The work for one table inside one destination transaction."""

    # Tables whose hashed columns change digest in this cycle (a resync): emptied before they are re-read.
    digest_switches: frozenset[str] = frozenset()
    # Where reads report their rows as they come (bars, plain lines); None: nowhere, at no cost.
    progress: ReadProgress | None = None
    # The cycle's read of the replication slot, in the log capture mode (None: the watermark mode).
    log_session: LogSession | None = None

    def __init__(self, config: SyncConfig, destination: Destination, state: StateStore, cycle_id: str) -> None:
        self.config = config
        self.destination = destination
        self.dialect = destination.dialect
        self.state = state
        self.schema = config.schema
        self.cycle_id = cycle_id
        self.digest = digest_for(config.hash_key)

    def on_connection(self, destination: Destination) -> TableCycle:
        """The same cycle's work on another warehouse connection (a lane of its own)."""
        lane = TableCycle(self.config, destination, StateStore(destination, self.schema), self.cycle_id)
        lane.digest_switches = self.digest_switches
        lane.progress = self.progress
        lane.log_session = self.log_session
        return lane

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
        capture = capture_for(snapshot, self.config.lookback_seconds, self.log_session)
        position = capture.start(plan, previous, full)
        may_have_deletions, deletes_recorded = deletions_since(plan, horizon, previous)
        destination.begin()
        # New columns come with previous=None from cdc_sync.guards (a full re-read), so no row is left without them.
        prepare_mirror_table(destination, schema, plan, mirror_columns)
        history = self.config.history and bool(plan.merge_key)  # a keyless table has no rows to follow
        new_history = history and prepare_history_table(destination, schema, plan)
        if plan.name in self.digest_switches:
            destination.execute(dialect.delete_all(schema, plan.name))
        staging = dialect.staging_name(plan.name)
        tally = Tally(plan.cursor, plan.merge_key if plan.strategy in CURSOR_STRATEGIES else ())
        changes = capture.changes(plan, position)
        batches: Iterable = faults.after_first("read", tally.watch(changes.upserts))
        if self.progress is not None:
            batches = track(self.progress, plan.name, _estimate(snapshot, plan, previous, changes.read_everything),
                            batches)
        if plan.hashed_columns:
            batches = hash_columns(batches, plan.hashed_columns, self.digest.hex_digest)
        read_everything = changes.read_everything
        live_rows: int | None = None
        if changes.log is not None:
            hashed = functools.partial(hash_columns, names=plan.hashed_columns, hex_digest=self.digest.hex_digest)
            if new_history:
                seed_history(destination, schema, plan, started)
            if history and changes.log_versions is not None:  # before the mirror changes: it holds unsent values
                record_log_versions(destination, schema, plan, changes.log_versions(), changes.log_identity, started,
                                    hashed)
            report.rows_written, report.rows_deleted, tally.rows = apply_log_changes(
                destination, schema, plan, changes.log, started, hashed)
        elif not plan.merge_key:
            report.rows_written = self._append(plan, staging, batches, started, replace_all=True)
            faults.point("merge")
        elif read_everything and not destination.scalar(dialect.count_all(schema, plan.name)):
            # A first load: keys are unique within one snapshot, so rows go straight into the empty mirror, with
            # no MERGE and no staging of the whole table.
            report.rows_written = self._append(plan, staging, batches, started)
            faults.point("merge")
        else:
            source_count = SourceCount(snapshot, plan, needed=not read_everything and plan.delete_mode != "ignore",
                                       counts_suffice=not may_have_deletions)
            try:
                report.rows_written = self._merge_in_chunks(
                    plan, staging, batches, started, on_read_end=source_count.start,
                    compare_rows=not changes.only_rewritten_rows,
                )
                faults.point("merge")
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
        if new_history and changes.log is None:  # after the data changes (Snowflake: staging DDL comes first)
            seed_history(destination, schema, plan, started)
        if history and changes.log is None and (report.rows_written or report.rows_deleted):
            record_query_versions(destination, schema, plan, started, report.rows_deleted)
        report.rows_read = tally.rows
        if live_rows is None:
            live_rows = int(destination.scalar(dialect.count_live(schema, plan.name)))
        position = changes.position_to_commit(tally.maximum)
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
            deletes_recorded=deletes_recorded,
            log_position=changes.log_position,
        )
        if changes.log is not None and previous is not None:
            # Read from the log: the query path's position stays where its last read left it (row versions and
            # the delete check included), so a later cycle in the watermark mode reads every row changed since.
            # This snapshot may see commits after the log's end, which that cycle must not take as read.
            watermark = replace(watermark, row_version=previous.row_version,
                                deletes_recorded=previous.deletes_recorded)
        self.state.save_watermark(watermark)
        for column in sorted(plan.hashed_columns):
            self.state.save_meta(meta_key(plan.name, column), self.digest.label)
        faults.point("state")
        self.state.record_run(self._run_record(plan, report, started, finished))
        faults.point("commit")
        destination.commit()
        return watermark

    def _append(self, plan: TablePlan, staging: str, batches: Iterable[pa.RecordBatch], synced_at: datetime,
                replace_all: bool = False) -> int:
        """Rows into a mirror that holds none of them (the destination may pass them through its staging table).

        ``replace_all`` empties the mirror first (a table without a key is replaced whole). The delete comes after
        the staging DDL: it opens the data transaction, and on Snowflake DDL inside it would commit it early."""
        destination, dialect = self.destination, self.dialect
        destination.execute(dialect.drop_staging(staging))
        destination.execute(dialect.create_staging(staging, plan.columns))
        if replace_all:
            destination.execute(dialect.delete_all(self.schema, plan.name))
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
            faults.point("staging")
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


def _estimate(snapshot: SourceSnapshot, plan: TablePlan, previous: Watermark | None, whole_table: bool) -> int | None:
    """About how many rows the read brings. A read of changes: unknown until it is done. A whole table: the live
    rows its mirror held after the last cycle (free, and exact then), else the source's estimate (a first load)."""
    if not whole_table:
        return None
    if previous is not None and previous.live_rows is not None:
        return previous.live_rows
    return snapshot.estimate_rows(plan.table)


def _notify_when_exhausted(batches: Iterable[pa.RecordBatch], callback: Callable[[], None]) -> Iterator[pa.RecordBatch]:
    """The batches, then ``callback()`` once the source stream has ended (its read, e.g. a COPY, is finished)."""
    yield from batches
    callback()
