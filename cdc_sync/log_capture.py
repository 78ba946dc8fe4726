"""The log capture mode: a cycle's changes read from PostgreSQL's write-ahead log through cdc_sync's replication
slot (DESIGN §6), instead of querying every table.

One :class:`LogSession` per cycle, opened while the cycle holds its schema's lock (so no two cycles ever read the
slot at once):

1. the publication and slot are made (or brought up to date) first, and the slot's position noted;
2. the WAL position now is taken, and the slot is peeked up to it: every transaction committed before it, decoded;
3. each table's cycle (:class:`LogCapture`) takes its changes after the position stored in its watermark, and
   commits the session's position with its rows. A table without a stored position (a first load, a resync, a
   table that was in the watermark mode) is read through the query path, in a snapshot taken after the slot
   exists: in full when it has no query position either, else only its rows changed since (a mirror switching
   modes is never copied again). It stores the slot's position: the changes since then are replayed by the next
   cycle, and applying them again is harmless, as each table's changes are applied in LSN order up to the newest;
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
from cdc_sync.errors import CdcSyncError
from cdc_sync.log_changes import TableLogChanges, collapse_in_segments
from cdc_sync.log_spool import MIB, ChangeSpool, LoggedChange
from cdc_sync.plan import TablePlan
from cdc_sync.positions import CursorPosition, next_position, start_position
from cdc_sync.sources import SeenRowVersions, Source, SourceSnapshot, open_log
from cdc_sync.sources.boundary import TranslatedLog
from cdc_sync.sources.pgoutput import format_lsn, parse_lsn
from cdc_sync.sources.publication import LogNames, PublishedTable, table_set_taken
from cdc_sync.state import Watermark

log = logging.getLogger("cdc_sync")
# How long a cycle lets PostgreSQL wait, while it makes the slot, for the write transactions running on the server
# (see sources/postgres_log.py): a first log cycle on a server with a long writer must not hold its task meanwhile.
SLOT_CREATE_WAIT_SECONDS = 10.0


class PublicationTaken(CdcSyncError):
    """``capture=auto`` found cdc_sync's publication listing another table set (see
    :func:`cdc_sync.sources.publication.table_set_taken`): the cycle goes on in the watermark mode."""


class LogSession:
    """One cycle's read of the slot: every published table's committed changes up to the WAL position at its start."""

    def __init__(self, source_log: TranslatedLog, tables: Sequence[str], slot_position: int, position: int,
                 spool: ChangeSpool, unlogged: frozenset[str] = frozenset()) -> None:
        self._log = source_log
        self.tables = tuple(tables)
        # Tables whose changes before this cycle the slot may not hold (the slot was made now, or the table was just
        # added to the publication): their stored positions mean nothing, so they are read through the query path.
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
            taken = config.capture == "auto" and table_set_taken((table.name for table in status.tables),
                                                                  (plan.name for plan in plans))
            if taken:
                # Checked again under the slot's lock: cycles of other table sets may have started at once.
                raise PublicationTaken(taken)
            published_before = {table.name for table in status.tables} if status.slot_exists else set()
            published = [PublishedTable(plan.name, plan.column_names) for plan in plans]
            for done in source_log.setup(published, slot_wait_seconds=SLOT_CREATE_WAIT_SECONDS):
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

    def table_versions(self, plan: TablePlan, after: int, copied: SeenRowVersions | None = None) \
            -> Iterator[LoggedChange]:
        """Every version of the table committed after ``after`` (its stored position), in the log's order, each
        with its message's LSN and its commit's end LSN and time: read from the spool as it is consumed. Without
        the transactions ``copied`` saw, as :meth:`table_changes`."""
        return self._spool.versions(plan.name, after, plan.column_names, copied)

    def identity(self, plan: TablePlan) -> tuple[str, ...]:
        """The replica identity columns the table's deletes are given in."""
        return tuple(self._spool.identity(plan.name) or plan.table.primary_key)

    def table_changes(self, plan: TablePlan, after: int, copied: SeenRowVersions | None = None) \
            -> Iterator[TableLogChanges]:
        """The table's changes committed after ``after``, collapsed in segments applied one after another; without
        those of transactions the table's last read through the query path saw (``copied``, its snapshot), which
        that read holds already. Applying them again could undo what a later rewrite by DDL did, which the log does
        not carry (an Airflow upgrade's ALTER TABLE)."""
        identity = self._spool.identity(plan.name) or plan.table.primary_key
        return collapse_in_segments(plan, identity, self._spool.batches(plan.name, after, copied))

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


def bound_unread_slot(config: SyncConfig, source: Source) -> list[str]:
    """In a watermark-mode cycle, cdc_sync's slot of this schema (left by earlier log cycles, or made by ``capture
    setup`` for a role that may not read it) is read and advanced by nothing, so the WAL it keeps only grows: the
    forgotten slot that fills a production disk. The same bound as in the log mode applies: a warning past half of
    ``max_retained_wal``, and past it (or once PostgreSQL lost the slot's WAL) the slot and publication are dropped.
    A later log cycle makes new ones and reads each table's changes since its query position, so nothing is lost.
    Only cdc_sync's own objects are dropped (:meth:`PostgresLog.drop` proves it); when the role may not drop them,
    the warning names the command an admin runs. Returns the warnings, which are logged too."""
    names = LogNames.for_schema(config.schema)
    try:
        slot = source.replication_slot_wal(names.slot)
    except CdcSyncError as error:  # a check for safety's sake: the cycle does not depend on it
        log.info("Could not read the WAL kept by replication slot %s: %s", names.slot, error)
        return []
    if slot is None:
        return []
    retained, wal_status = slot
    verdict = retained_wal_verdict(retained, wal_status, config.max_retained_wal)
    if verdict is None:
        return []
    bound = f"max_retained_wal ({config.max_retained_wal / MIB:,.0f} MiB)"
    state = (f"keeps {(retained or 0) / MIB:,.0f} MiB of WAL on the source, over "
             f"{bound if verdict.drop else 'half of ' + bound}")
    if wal_status == "lost":
        state = "lost WAL it needed (PostgreSQL invalidated it)"
    kept = (f"cdc_sync's replication slot {names.slot} {state}, and nothing advances it while cycles run in the "
            "watermark mode")
    if not verdict.drop:
        message = (f"{kept}: drop it with `cdc-sync capture drop` if the mirror stays in this mode; past the bound, "
                   "a cycle drops it.")
    else:
        try:
            with open_log(config.source_url, names) as source_log:
                done = source_log.drop()
        except CdcSyncError as error:
            message = f"{kept}, but it could not be dropped ({error}): an admin should run `cdc-sync capture drop`."
        else:
            message = (f"{kept}: {' and '.join(done) or 'it was gone already'}, so that it cannot fill the source's "
                       "disk (a later log-mode cycle makes a new one, with nothing lost).")
    log.warning(message)
    return [message]


class LogCapture(Capture):
    """A table's changes from the session's peek, or its first copy through the query path."""

    mode = "log"

    def __init__(self, session: LogSession, snapshot: SourceSnapshot, lookback_seconds: float) -> None:
        self.session = session
        self.snapshot = snapshot
        self.lookback_seconds = lookback_seconds
        self._after: int | None = None
        self._copied: SeenRowVersions | None = None

    def start(self, plan: TablePlan, previous: Watermark | None, full: bool) -> CursorPosition:
        stored = None if previous is None or plan.name in self.session.unlogged else previous.log_position
        self._after = None if full or stored is None else parse_lsn(stored)
        self._copied = None if previous is None or not previous.row_version else \
            SeenRowVersions.parse(previous.row_version)
        # The query path's position: kept as it is by log reads, so it stays valid for a read through the query
        # path (a table switching into the log mode) and for a later cycle in the watermark mode.
        return start_position(plan, previous, self.lookback_seconds, full)

    def changes(self, plan: TablePlan, position: CursorPosition) -> TableChanges:
        if self._after is None:
            # No usable log position (a first load, a resync, a table that was in the watermark mode or new to
            # the slot): the query path reads the table's rows changed since its query position, in full when it
            # has none, in a snapshot taken after the slot's position; the changes after it are replayed next.
            horizon = self.snapshot.horizon
            return TableChanges(
                upserts=self.snapshot.read_rows(plan.table, position.where),
                position_to_commit=lambda max_seen: next_position(plan, position, horizon, max_seen),
                read_everything=position.where is None,
                only_rewritten_rows=self.snapshot.reads_only_rewritten_rows(position.where),
                log_position=format_lsn(self.session.slot_position),
            )
        after, copied = self._after, self._copied
        return TableChanges(upserts=(), position_to_commit=lambda _max_seen: position, read_everything=False,
                            log=self.session.table_changes(plan, after, copied),
                            log_position=format_lsn(self.session.position),
                            log_versions=lambda: self.session.table_versions(plan, after, copied),
                            log_identity=self.session.identity(plan))
