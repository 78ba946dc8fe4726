"""Where a table's next read starts and how far its watermark may advance (DESIGN §2).

A watermark never passes a row that may still commit: timestamp marks stop at the oldest open writer, append-only
ids are confirmed only once every writer that could still commit a smaller id has finished, and row-version reads
take every row the last read's snapshot could not see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from cdc_sync.plan import CURSOR_STRATEGIES, TablePlan
from cdc_sync.sources import CursorFilter, Horizon, RowVersionFilter, SeenRowVersions
from cdc_sync.state import Watermark
from cdc_sync.transform import Tally


@dataclass
class CursorPosition:
    """Where the next read of a table starts, and what to remember after it."""

    where: CursorFilter | RowVersionFilter | None
    high_water_mark: Any
    pending: Any
    pending_read_at: datetime | None


def format_mark(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def start_position(plan: TablePlan, previous: Watermark | None, lookback: float, full: bool) -> CursorPosition:
    if full or previous is None or plan.strategy == "full":
        return CursorPosition(None, None, None, None)
    if plan.strategy == "row_version":
        since = previous.high_water_mark
        return CursorPosition(RowVersionFilter(SeenRowVersions.parse(since)) if since else None, since, None, None)
    # Reads always start at the confirmed mark: an id below a pending mark may commit after the read that set it
    # (its writer was open then), so the read that confirms the pending mark must still take it.
    mark = plan.parse_mark(previous.high_water_mark)
    pending = plan.parse_mark(previous.pending_high_water_mark)
    pending_at = previous.pending_read_at
    if mark is None:
        return CursorPosition(None, None, pending, pending_at)
    after = mark - timedelta(seconds=lookback) if plan.cursor_is_timestamp else mark
    since = SeenRowVersions.parse(previous.row_version) if previous.row_version else None
    return CursorPosition(CursorFilter(plan.cursor, after, since), mark, pending, pending_at)  # type: ignore[arg-type]


def next_position(plan: TablePlan, position: CursorPosition, horizon: Horizon, max_seen: Any) -> CursorPosition:
    """Advance the watermark no further than what can no longer change (see DESIGN §2)."""
    if plan.strategy == "row_version":
        # Every change by a transaction older than the snapshot's xmin was visible to this read.
        return replace(position, high_water_mark=horizon.row_version)
    if plan.strategy == "full":
        return position
    if plan.cursor_is_timestamp:
        if max_seen is None:
            return position
        # A row stamped before the oldest open writer started may still commit: stop there.
        safe = plan.source_time(horizon.safe_until)
        return replace(position, high_water_mark=min(max_seen, safe))
    mark = position.high_water_mark
    # Every id up to here was committed when this read began (a row-version read returns only rows new to the
    # last read, so the largest it returns may lie below ids read before).
    known = [value for value in (max_seen, mark, position.pending) if value is not None]
    if not known:
        return position
    read_up_to = max(known)
    # (Only where the view of writers is exact: a lagging one may miss a writer that has just taken an id.)
    no_writer_seen = (horizon.sees_open_writes and horizon.oldest_open_write_at is None
                      and horizon.open_writes_seen_until is None and not horizon.writer_missed)
    if horizon.ids_commit_in_order or (mark is None and no_writer_seen):
        # One writer at a time: an id this read did not see can only be larger than those it saw. And a first
        # read with no writer open confirms at once: otherwise the next read would have to read the whole table
        # again (it leaves only the microseconds between a transaction's nextval and its first row).
        return replace(position, high_water_mark=read_up_to, pending=None, pending_read_at=None)
    # Otherwise even with no writer open at this read, an id is not confirmed yet: a transaction takes its id
    # (nextval) before it holds a transaction id that shows it as a writer. The next read confirms it.
    if position.pending is not None and _writers_finished_since(horizon, position.pending_read_at):
        # The last read's writers had all finished when this read began, and this read took every id above the
        # mark: whatever they committed below the last read's maximum has been read now. Writers that began after
        # the last read can only hold larger ids.
        mark = position.pending if mark is None else max(mark, position.pending)
    return replace(position, high_water_mark=mark, pending=read_up_to, pending_read_at=horizon.writers_compared_from)


def _writers_finished_since(horizon: Horizon, moment: datetime | None) -> bool:
    """Whether every write transaction open at ``moment`` had ended when this read began. A horizon whose view of
    writers lags can tell only for a moment before what it has seen (a writer that began before ``moment`` and is
    still open must be in its view)."""
    if horizon.writer_missed or (moment is not None and horizon.writers_seen_until <= moment):
        return False
    return horizon.sees_open_writes and (
        horizon.oldest_open_write_at is None or (moment is not None and horizon.oldest_open_write_at > moment)
    )


def mark_row_key(plan: TablePlan, previous: Watermark | None, tally: Tally, mark: Any) -> str | None:
    """The merge key (a JSON array) of a source row whose cursor reaches ``mark``, the watermark being saved.

    The row with the largest cursor read is one; when nothing was read, the mark is unchanged and so is its row.
    None when unknown, or when the key holds values a JSON array cannot carry exactly (the reset check then scans).
    """
    if plan.strategy not in CURSOR_STRATEGIES or mark is None or set(plan.merge_key) & plan.hashed_columns:
        return None  # (a hashed key column's value must not reach the warehouse, even in the state tables)
    if tally.maximum is not None and tally.maximum_key is not None and tally.maximum >= mark:
        values = list(tally.maximum_key)
        if all(isinstance(value, str | int) and not isinstance(value, bool) for value in values):
            return json.dumps(values)
        return None
    unchanged = (previous is not None and previous.cursor_column == plan.cursor
                 and previous.merge_key == plan.merge_key_text and plan.parse_mark(previous.high_water_mark) == mark)
    return previous.mark_row_key if unchanged else None  # type: ignore[union-attr]
