"""The log capture mode: a cycle's changes read from PostgreSQL's write-ahead log through cdc_sync's replication
slot (DESIGN §6), instead of querying every table.

One :class:`LogSession` per cycle, opened while the cycle holds its schema's lock (so no two cycles ever read the
slot at once):

1. the publication and slot are made (or brought up to date) first, and the slot's position noted;
2. the WAL position now is taken, and the slot is peeked up to it: every transaction committed before it, decoded;
3. each table's cycle (:class:`LogCapture`) takes its changes after the position stored in its watermark, and
   commits the session's position with its rows. A table without a stored position (a first load, a resync, a
   table that was in the watermark mode) is copied in full through the query path, in a snapshot taken after the
   slot exists, and stores the slot's position: the changes since then are replayed by the next cycle, and applying
   them again is harmless, as each table's changes are applied in LSN order up to the newest;
4. once every table has committed, the slot advances to the lowest position stored (:meth:`LogSession.advance`).
   A crash before that replays changes at or below the stored positions, which are skipped.

The peek is read once, as a stream, and spooled to local disk table by table (:mod:`cdc_sync.log_spool`); each
table's changes are read back and collapsed in segments of a bounded size, applied in order in the table's
transaction. A cycle's memory follows neither the changes since the last cycle nor the largest transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from cdc_sync import faults
from cdc_sync.capture import Capture, TableChanges
from cdc_sync.config import SyncConfig
from cdc_sync.log_changes import TableLogChanges, collapse_in_segments
from cdc_sync.log_spool import ChangeSpool, LoggedChange
from cdc_sync.plan import TablePlan
from cdc_sync.positions import CursorPosition, next_position, start_position
from cdc_sync.sources import SourceSnapshot, open_log
from cdc_sync.sources.boundary import TranslatedLog
from cdc_sync.sources.pgoutput import format_lsn, parse_lsn
from cdc_sync.sources.publication import LogNames, PublishedTable
from cdc_sync.state import Watermark

log = logging.getLogger("cdc_sync")
MIB = 1 << 20


class LogSession:
    """One cycle's read of the slot: every published table's committed changes up to the WAL position at its start."""

    def __init__(self, source_log: TranslatedLog, tables: Sequence[str], slot_position: int, position: int,
                 spool: ChangeSpool, unlogged: frozenset[str] = frozenset()) -> None:
        self._log = source_log
        self.tables = tuple(tables)
        # Tables whose changes before this cycle the slot may not hold (the slot was made now, or the table was just
        # added to the publication): their stored positions mean nothing, so they are copied in full.
        self.unlogged = unlogged
        self.slot_position = slot_position  # where the slot stood before this cycle's peek
        self.position = position  # every change committed before it has been read
        self._spool = spool

    @classmethod
    def open(cls, config: SyncConfig, plans: Sequence[TablePlan], warnings: list[str]) -> LogSession | None:
        """The session, or None when the slot kept more WAL than ``config.max_retained_wal`` (or lost it) and was
        dropped: the cycle then resyncs every table in the watermark mode. Warnings are appended to ``warnings``."""
        source_log = open_log(config.source_url, LogNames.for_schema(config.schema))
        try:
            status = source_log.status()
            verdict = retained_wal_verdict(status.retained_wal_bytes, status.wal_status, config.max_retained_wal)
            if verdict is not None:
                warnings.append(verdict.message)
                log.warning(verdict.message)
                if verdict.drop:
                    for done in source_log.drop():
                        log.info("log capture: %s", done)
                    source_log.close()
                    return None
            published_before = {table.name for table in status.tables} if status.slot_exists else set()
            for done in source_log.setup([PublishedTable(plan.name, plan.column_names) for plan in plans]):
                log.info("log capture: %s", done)
            status = source_log.status()
            slot_position = status.confirmed_flush_lsn or status.restart_lsn or 0
            upto = source_log.current_lsn()
            spool = ChangeSpool({plan.name: plan.column_names for plan in plans})
        except BaseException:
            source_log.close()
            raise
        try:
            spool.read(source_log.peek(upto))
        except BaseException:
            spool.close()
            source_log.close()
            raise
        unlogged = frozenset(plan.name for plan in plans if plan.name not in published_before)
        return cls(source_log, [plan.name for plan in plans], slot_position, max(upto, spool.last_commit), spool,
                   unlogged)

    def capture(self, snapshot: SourceSnapshot, lookback_seconds: float) -> LogCapture:
        return LogCapture(self, snapshot, lookback_seconds)

    def table_versions(self, plan: TablePlan, after: int) -> Iterator[LoggedChange]:
        """Every version of the table committed after ``after`` (its stored position), in the log's order, each
        with its message's LSN and its commit's end LSN and time: read from the spool as it is consumed."""
        return self._spool.versions(plan.name, after, plan.column_names)

    def identity(self, plan: TablePlan) -> tuple[str, ...]:
        """The replica identity columns the table's deletes are given in."""
        return tuple(self._spool.identity(plan.name) or plan.table.primary_key)

    def table_changes(self, plan: TablePlan, after: int) -> Iterator[TableLogChanges]:
        """The table's changes committed after ``after``, collapsed in segments applied one after another."""
        identity = self._spool.identity(plan.name) or plan.table.primary_key
        return collapse_in_segments(plan, identity, self._spool.batches(plan.name, after))

    def advance(self, watermarks: Mapping[str, Watermark]) -> None:
        """Move the slot to the lowest position the published tables have committed, so the source may recycle the
        WAL before it; not at all while a table has none (its first copy has not committed)."""
        positions = [watermarks[name].log_position if name in watermarks else None for name in self.tables]
        if any(position is None for position in positions):
            return
        faults.point("advance")
        self._log.advance(min(parse_lsn(position) for position in positions))  # type: ignore[arg-type]

    def close(self) -> None:
        try:
            self._log.close()
        finally:
            self._spool.close()

    def __enter__(self) -> LogSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class WalVerdict:
    drop: bool
    message: str


def retained_wal_verdict(retained: int | None, wal_status: str | None, bound: int) -> WalVerdict | None:
    """What the WAL the slot keeps calls for: nothing (None), a warning past half the bound, or, past the bound or
    once PostgreSQL invalidated the slot (wal_status ``lost``), dropping it so that it cannot fill the source's
    disk. Nothing is lost: the cycle re-reads every table in the watermark mode."""
    mib = f"{(retained or 0) / MIB:,.0f} MiB"
    if wal_status == "lost":
        return WalVerdict(True, "The replication slot lost WAL it needed (PostgreSQL invalidated it): it is dropped, "
                                "and this cycle re-reads every table in the watermark mode.")
    if retained is None or retained <= bound // 2:
        return None
    if retained > bound:
        return WalVerdict(True, f"The replication slot keeps {mib} of WAL, over max_retained_wal ({bound / MIB:,.0f} "
                                "MiB): it is dropped so that it cannot fill the source's disk, and this cycle re-reads "
                                "every table in the watermark mode. Run cycles more often, or raise max_retained_wal.")
    return WalVerdict(False, f"The replication slot keeps {mib} of WAL, over half of max_retained_wal "
                             f"({bound / MIB:,.0f} MiB); past it, the slot is dropped and the tables resynced.")


class LogCapture(Capture):
    """A table's changes from the session's peek, or its first copy through the query path."""

    mode = "log"

    def __init__(self, session: LogSession, snapshot: SourceSnapshot, lookback_seconds: float) -> None:
        self.session = session
        self.snapshot = snapshot
        self.lookback_seconds = lookback_seconds
        self._after: int | None = None

    def start(self, plan: TablePlan, previous: Watermark | None, full: bool) -> CursorPosition:
        stored = None if previous is None or plan.name in self.session.unlogged else previous.log_position
        self._after = None if full or stored is None else parse_lsn(stored)
        return start_position(plan, previous, self.lookback_seconds, full=self._after is None)

    def changes(self, plan: TablePlan, position: CursorPosition) -> TableChanges:
        if self._after is None:
            horizon = self.snapshot.horizon
            return TableChanges(
                upserts=self.snapshot.read_rows(plan.table, None),
                position_to_commit=lambda max_seen: next_position(plan, position, horizon, max_seen),
                read_everything=True,
                log_position=format_lsn(self.session.slot_position),
            )
        after = self._after
        return TableChanges(upserts=(), position_to_commit=lambda _max_seen: position, read_everything=False,
                            log=self.session.table_changes(plan, after),
                            log_position=format_lsn(self.session.position),
                            log_versions=lambda: self.session.table_versions(plan, after),
                            log_identity=self.session.identity(plan))
