"""Tables of one cycle side by side: several lanes at once, each lane a thread with connections of its own.

A cycle of an already mirrored schema spends most of its time waiting: on the source's scan of a big table, on
the warehouse's MERGE, on round trips. With two lanes the small tables are synced while the big one is scanned.
Each table still commits alone, so a table's rows and watermark stay atomic whatever the other lanes do.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from cdc_sync.config import SyncConfig
from cdc_sync.destinations import open_destination
from cdc_sync.destinations.base import Destination
from cdc_sync.errors import CdcSyncError
from cdc_sync.plan import TablePlan
from cdc_sync.report import TableReport
from cdc_sync.sources import Source, open_source
from cdc_sync.state import Watermark

if TYPE_CHECKING:
    from cdc_sync.replicate import TableCallback, TableCycle

log = logging.getLogger("cdc_sync")

# In a first load, a second lane takes only tables estimated below this many rows (dag_run and job of a busy
# Airflow, not task_instance): two large streams at once would double the memory of the load for little gain.
SIDE_LANE_MAX_ROWS = 500_000

Item = TypeVar("Item")
Result = TypeVar("Result")


def run_in_lanes(items: Sequence[Item], lanes: Sequence[Callable[[Item], Result]],
                 side_takes: Callable[[Item], bool] | None = None) -> list[Result]:
    """Give each item to the next free lane (items in the order given: put the longest first); results come back
    in the items' order.

    With ``side_takes``, only the first lane takes items from the front; the other lanes take them from the back,
    and only those ``side_takes`` accepts (a lane stops at the first it refuses): the small tables of a first load
    beside the large ones, which stay one at a time on the first lane.

    The first lane runs on the calling thread. An exception escaping a lane stops every lane from taking another
    item; it is re-raised here once all lanes have finished what they hold, so no connection is closed under a
    running table.
    """
    pending: collections.deque[tuple[int, Item]] = collections.deque(enumerate(items))
    guard = threading.Lock()
    results: dict[int, Result] = {}
    failures: list[BaseException] = []
    stop = threading.Event()

    def take(first: bool) -> tuple[int, Item] | None:
        with guard:
            if not pending:
                return None
            if side_takes is None or first:
                return pending.popleft()
            return pending.pop() if side_takes(pending[-1][1]) else None

    def work(lane: Callable[[Item], Result], first: bool) -> None:
        while not stop.is_set():
            taken = take(first)
            if taken is None:
                return
            position, item = taken
            try:
                results[position] = lane(item)
            except BaseException as error:  # re-raised in the calling thread below
                failures.append(error)
                stop.set()
                return

    helpers = [threading.Thread(target=work, args=(lane, False), name=f"cdc_sync-lane-{number}", daemon=True)
               for number, lane in enumerate(lanes[1:], start=2)]
    for helper in helpers:
        helper.start()
    try:
        work(lanes[0], True)
    finally:
        for helper in helpers:
            helper.join()
    if failures:
        raise failures[0]
    return [results[position] for position in range(len(items))]


def lane_count(config: SyncConfig, destination: Destination, plans: list[TablePlan],
               watermarks: dict[str, Watermark], resync: bool) -> int:
    """Tables run side by side in cycles of an already mirrored schema: there every table's work is bounded
    (changes since its watermark). A first load into a fresh schema gets two lanes (see :func:`first_load_order`);
    a resync, or a first load of some tables beside mirrored ones, streams whole tables one at a time, in the
    memory budget of one table."""
    if resync or len(plans) < 2 or not destination.supports_concurrent_tables or config.parallel_tables < 2:
        return 1
    if not any(plan.name in watermarks for plan in plans):
        return 2
    mirrored = all(plan.name in watermarks and watermarks[plan.name].last_success_at is not None for plan in plans)
    return min(config.parallel_tables, len(plans)) if mirrored else 1


def first_load_order(source: Source, plans: list[TablePlan]) -> tuple[list[TablePlan], Callable[[TablePlan], bool]]:
    """A fresh schema's tables, largest first by the source's estimate, and which of them a second lane may take:
    those known to hold fewer than :data:`SIDE_LANE_MAX_ROWS`. The first lane streams the large tables one after
    another while the second loads the small ones (their set-up, reads and commits are mostly round trips), so
    the first load ends about when its largest table does. A table without an estimate counts as large."""
    with source.snapshot() as snapshot:
        estimates = {plan.name: snapshot.estimate_rows(plan.table) for plan in plans}
    order = sorted(plans, key=lambda plan: -(estimates[plan.name] if estimates[plan.name] is not None
                                              else SIDE_LANE_MAX_ROWS))

    def small(plan: TablePlan) -> bool:
        estimate = estimates[plan.name]
        return estimate is not None and estimate < SIDE_LANE_MAX_ROWS

    return order, small


def sync_in_lanes(config: SyncConfig, cycle: TableCycle, source: Source, plans: list[TablePlan],
                  watermarks: dict[str, Watermark], on_table: TableCallback | None, lanes: int,
                  sync_table: Callable[[TableCycle, Source, TablePlan], TableReport]) -> list[TableReport]:
    """Sync the tables on ``lanes`` lanes with ``sync_table``, the largest first; reports come back in plan order.

    The first lane uses the cycle's own connections; every other lane opens a source and a warehouse connection
    of its own. If one cannot be opened, the cycle goes on with the lanes it has."""
    callback_lock = threading.Lock()

    def lane(lane_cycle: TableCycle, lane_source: Source) -> Callable[[TablePlan], TableReport]:
        def sync(plan: TablePlan) -> TableReport:
            table_report = sync_table(lane_cycle, lane_source, plan)
            if on_table:
                with callback_lock:
                    on_table(table_report)
            return table_report
        return sync

    # A fresh schema: every table is a first load into an empty mirror, so each one appends and none joins.
    first_load = not any(plan.name in watermarks for plan in plans)
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
            lane_destination.use_schema(config.schema)
            lane_destination.share_with_concurrent_tables(appends_only=first_load)
            workers.append(lane(cycle.on_connection(lane_destination), lane_source))
        if len(workers) > 1:
            cycle.destination.share_with_concurrent_tables(appends_only=first_load)
        side_takes = None
        if first_load:
            by_size, side_takes = first_load_order(source, plans)
        else:
            # Largest mirror first, so that the small tables fill the other lanes meanwhile.
            by_size = sorted(plans, key=lambda plan: -(watermarks[plan.name].live_rows or 0))
        reports = {table_report.table: table_report for table_report in run_in_lanes(by_size, workers, side_takes)}
    return [reports[plan.name] for plan in plans]
