"""Work through a list of items on several lanes at once, each lane a thread with connections of its own.

A cycle of an already mirrored schema spends most of its time waiting: on the source's scan of a big table, on
the warehouse's MERGE, on round trips. With two lanes the small tables are synced while the big one is scanned.
Each table still commits alone, so a table's rows and watermark stay atomic whatever the other lanes do.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

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
