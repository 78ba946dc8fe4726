"""Tables of one cycle side by side: several lanes at once, each lane a thread with connections of its own.

A cycle of an already mirrored schema spends most of its time waiting: on the source's scan of a big table, on
the warehouse's MERGE, on round trips. With two lanes the small tables are synced while the big one is scanned.
Each table still commits alone, so a table's rows and watermark stay atomic whatever the other lanes do.
"""

from __future__ import annotations

import contextlib
import logging
import queue
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

Item = TypeVar("Item")
Result = TypeVar("Result")


def run_in_lanes(items: Sequence[Item], lanes: Sequence[Callable[[Item], Result]]) -> list[Result]:
    """Give each item to the next free lane (items in the order given: put the longest first); results come back
    in the items' order.

    The first lane runs on the calling thread. An exception escaping a lane stops every lane from taking another
    item; it is re-raised here once all lanes have finished what they hold, so no connection is closed under a
    running table.
    """
    pending: queue.SimpleQueue[tuple[int, Item]] = queue.SimpleQueue()
    for position, item in enumerate(items):
        pending.put((position, item))
    results: dict[int, Result] = {}
    failures: list[BaseException] = []
    stop = threading.Event()

    def work(lane: Callable[[Item], Result]) -> None:
        while not stop.is_set():
            try:
                position, item = pending.get_nowait()
            except queue.Empty:
                return
            try:
                results[position] = lane(item)
            except BaseException as error:  # re-raised in the calling thread below
                failures.append(error)
                stop.set()
                return

    helpers = [threading.Thread(target=work, args=(lane,), name=f"cdc_sync-lane-{number}", daemon=True)
               for number, lane in enumerate(lanes[1:], start=2)]
    for helper in helpers:
        helper.start()
    try:
        work(lanes[0])
    finally:
        for helper in helpers:
            helper.join()
    if failures:
        raise failures[0]
    return [results[position] for position in range(len(items))]


def lane_count(config: SyncConfig, destination: Destination, plans: list[TablePlan],
               watermarks: dict[str, Watermark], resync: bool) -> int:
    """Tables run side by side only in cycles of an already mirrored schema: there every table's work is bounded
    (changes since its watermark), while first loads and resyncs stream whole tables one at a time, in the memory
    budget of one table."""
    mirrored = all(plan.name in watermarks and watermarks[plan.name].last_success_at is not None for plan in plans)
    if resync or not mirrored or len(plans) < 2 or not destination.supports_concurrent_tables:
        return 1
    return min(config.parallel_tables, len(plans))


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
            lane_destination.share_with_concurrent_tables()
            workers.append(lane(cycle.on_connection(lane_destination), lane_source))
        if len(workers) > 1:
            cycle.destination.share_with_concurrent_tables()
        # Largest mirror first, so that the small tables fill the other lanes meanwhile.
        by_size = sorted(plans, key=lambda plan: -(watermarks[plan.name].live_rows or 0))
        reports = {table_report.table: table_report for table_report in run_in_lanes(by_size, workers)}
    return [reports[plan.name] for plan in plans]
