"""How a cycle learns a table's changes: a :class:`Capture` gives the rows changed since a position and the position
to commit with them (DESIGN §6).

The cycle (stage → MERGE → deletes → state → commit) does not care how the changes were found. Today's mode is
:class:`QueryCapture`: it reads the rows a watermark has not passed yet (:mod:`cdc_sync.positions`), and finds
deletions by comparing key sets (:mod:`cdc_sync.deletes`), because a query cannot see a row that is gone. A log
capture (PostgreSQL logical decoding, :mod:`cdc_sync.sources.postgres_log`) will name its deleted keys instead, and
its position will be an LSN.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from cdc_sync.plan import TablePlan
from cdc_sync.positions import CursorPosition, next_position, start_position
from cdc_sync.sources import SourceSnapshot
from cdc_sync.state import Watermark

if TYPE_CHECKING:
    from cdc_sync.log_capture import LogSession
    from cdc_sync.log_changes import TableLogChanges
    from cdc_sync.log_spool import LoggedChange


@dataclass
class TableChanges:
    """One table's changes since a position, as a capture found them.

    ``upserts`` streams the new and changed rows (only the plan's columns). ``position_to_commit`` is asked once
    ``upserts`` is exhausted, with the largest cursor value read, and gives the position saved in the same
    transaction as the rows. Deletions: a query cannot see a row that is gone, so the cycle finds them by comparing
    the source's keys with the mirror's (:mod:`cdc_sync.deletes`). The log capture will stream the deleted keys it
    decodes in ``log`` instead (:mod:`cdc_sync.log_changes`), which the cycle applies in place of the comparison.
    """

    upserts: Iterable[pa.RecordBatch]
    position_to_commit: Callable[[Any], CursorPosition]
    # Every row of the table was read (a first load, a resync or a full-strategy table).
    read_everything: bool
    # Only rows rewritten since the last read come back, so the MERGE need not compare columns to skip unchanged
    # rows (see SourceSnapshot.reads_only_rewritten_rows).
    only_rewritten_rows: bool = False
    # The log mode: the table's decoded changes, collapsed in segments applied one after another (in place of
    # ``upserts`` and the key-set comparison), and the source LSN saved with them (also after a first copy in log
    # mode, which reads ``upserts``).
    log: Iterable[TableLogChanges] | None = None
    log_position: str | None = None
    # With history (cdc_sync.history_log): every version, uncollapsed, in the log's order, and the replica identity
    # columns its deletes are given in.
    log_versions: Callable[[], Iterable[LoggedChange]] | None = None
    log_identity: tuple[str, ...] = ()


class Capture(ABC):
    """Where a table's changes come from: one per source snapshot, asked table by table."""

    mode: str

    @abstractmethod
    def start(self, plan: TablePlan, previous: Watermark | None, full: bool) -> CursorPosition:
        """Where this cycle's read of ``plan``'s table starts, given its last committed watermark."""

    @abstractmethod
    def changes(self, plan: TablePlan, position: CursorPosition) -> TableChanges:
        """The table's changes since ``position``."""


class QueryCapture(Capture):
    """The watermark mode: rows whose cursor (or row version) a watermark has not passed, read in one snapshot."""

    mode = "query"

    def __init__(self, snapshot: SourceSnapshot, lookback_seconds: float) -> None:
        self.snapshot = snapshot
        self.lookback_seconds = lookback_seconds

    def start(self, plan: TablePlan, previous: Watermark | None, full: bool) -> CursorPosition:
        return start_position(plan, previous, self.lookback_seconds, full)

    def changes(self, plan: TablePlan, position: CursorPosition) -> TableChanges:
        horizon = self.snapshot.horizon
        return TableChanges(
            upserts=self.snapshot.read_rows(plan.table, position.where),
            position_to_commit=lambda max_seen: next_position(plan, position, horizon, max_seen),
            read_everything=position.where is None,
            only_rewritten_rows=self.snapshot.reads_only_rewritten_rows(position.where),
        )


def capture_for(snapshot: SourceSnapshot, lookback_seconds: float, log_session: LogSession | None = None) -> Capture:
    """The capture a cycle reads through: the log mode when the cycle opened a log session, else the query mode."""
    if log_session is not None:
        return log_session.capture(snapshot, lookback_seconds)
    return QueryCapture(snapshot, lookback_seconds)
