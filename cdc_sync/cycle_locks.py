"""Which cycle may write what: a short schema lock around work on the whole schema, and a lock per table around
that table's sync, so cycles of disjoint tables (Airflow tasks mapped over tables) run at the same time.

The locks live on a connection of their own, apart from the connections that write: a table's lock is released
as soon as that table has committed, whichever lane synced it, so the next cycle waiting for that table starts on
it at once while this cycle is still busy with the others. A slow table therefore delays only the next cycle's
attempt at that same table.

DuckDB is the exception: one process writes a file at a time, so a cycle there waits for the other process's
cycle to end (and says so); within one process its tables still run side by side (``parallel_tables``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from cdc_sync.config import SyncConfig
from cdc_sync.destinations import open_destination
from cdc_sync.destinations.base import Destination
from cdc_sync.errors import CycleAlreadyRunningError

log = logging.getLogger("cdc_sync")

# The schema lock is held for seconds (creating the schema, migrating the state tables, claiming the source), so
# a cycle always waits at least this long for it, whatever its lock_wait_seconds.
SCHEMA_WAIT_SECONDS = 60.0
POLL_SECONDS = 0.5
# The lock of a schema's replication slot (log capture), taken like a table's: its name cannot be an Airflow table.
LOG_SLOT_LOCK = "_cdc_log_slot"


def keep_trying(attempt: Callable[[], bool], seconds: float) -> bool:
    """Call ``attempt`` until it returns True or ``seconds`` have passed; its last answer."""
    if attempt():
        return True
    if seconds <= 0:
        return False
    retrying = Retrying(stop=stop_after_delay(seconds), wait=wait_fixed(POLL_SECONDS),
                        retry=retry_if_result(lambda done: not done),
                        retry_error_callback=lambda state: state.outcome.result())
    return bool(retrying(attempt))


class LogSlotBusy(CycleAlreadyRunningError):
    """Another cycle of the schema holds its replication slot (see :meth:`CycleLocks.log_slot_section`)."""


@contextlib.contextmanager
def open_destination_waiting(config: SyncConfig) -> Iterator[Destination]:
    """The cycle's warehouse connection. A DuckDB file another process is writing is waited for, up to
    ``lock_wait_seconds``, with one clear log line; other warehouses open at once."""
    opened: list[Destination] = []
    refusals: list[CycleAlreadyRunningError] = []

    def attempt() -> bool:
        try:
            opened.append(open_destination(config.destination_url, config.destination_options))
        except CycleAlreadyRunningError as error:
            if not refusals and config.lock_wait_seconds > 0:
                log.info("DuckDB has one writer per file and another process is writing it: waiting up to %g s for "
                         "that cycle to finish. To sync DuckDB tables in parallel, run one task with "
                         "parallel_tables instead of mapping tasks over tables.", config.lock_wait_seconds)
            refusals.append(error)
            return False
        return True

    if not keep_trying(attempt, config.lock_wait_seconds):
        raise refusals[-1]
    with opened[0] as destination:
        yield destination


class CycleLocks:
    """One cycle's locks on one destination schema, on a connection of their own (safe to use from lanes)."""

    def __init__(self, config: SyncConfig) -> None:
        self.schema = config.schema
        self.wait_seconds = config.lock_wait_seconds
        self._connection = open_destination(config.destination_url, config.destination_options)
        self._guard = threading.Lock()
        self._tables: set[str] = set()
        self._shared = False

    @contextlib.contextmanager
    def schema_section(self) -> Iterator[None]:
        """Hold the schema lock for work on the whole schema; waits for another cycle's short hold."""
        with self._guard:
            if not keep_trying(lambda: self._connection.try_lock(self.schema),
                               max(self.wait_seconds, SCHEMA_WAIT_SECONDS)):
                raise CycleAlreadyRunningError(
                    f"Another cycle (or cdc-sync verify --fix) held the lock of schema {self.schema!r} for over "
                    f"{max(self.wait_seconds, SCHEMA_WAIT_SECONDS):g} s: wait for it to finish (cdc-sync status "
                    "shows its progress), then run again."
                )
        try:
            yield
        finally:
            with self._guard:
                self._connection.unlock(self.schema)

    @contextlib.contextmanager
    def log_slot_section(self, wait: bool = True) -> Iterator[None]:
        """Hold the schema's replication slot for a whole log-capture cycle: one slot per schema, read and advanced
        by one cycle at a time. Waits up to ``lock_wait_seconds`` for another cycle's hold; without ``wait``
        (``capture=auto``) raises :class:`LogSlotBusy` at once, and the cycle goes on in the watermark mode: the
        mapped tasks of a fanned-out first run would otherwise take turns for the whole of the first one's copy."""
        if not keep_trying(lambda: self.try_table(LOG_SLOT_LOCK), self.wait_seconds if wait else 0):
            if not wait:
                raise LogSlotBusy(f"another cycle of schema {self.schema!r} is reading its replication slot")
            raise CycleAlreadyRunningError(
                f"Another cycle is reading the log of schema {self.schema!r} (its replication slot): wait for it to "
                "finish (cdc-sync status shows its progress), or give lock_wait_seconds."
            )
        try:
            yield
        finally:
            self.release_table(LOG_SLOT_LOCK)

    def try_table(self, table: str) -> bool:
        """Take ``table``'s lock if no other cycle holds it."""
        with self._guard:
            if self._connection.try_lock(self.schema, table):
                self._tables.add(table)
                return True
            return False

    def release_table(self, table: str) -> None:
        with self._guard:
            if table in self._tables:
                self._tables.discard(table)
                self._connection.unlock(self.schema, table)

    def share_schema(self) -> None:
        """Hold the schema for the whole cycle in shared mode (PostgreSQL), so that a cdc_sync from before
        per-table locks, which holds it exclusively for its whole cycle, never writes a table alongside this one."""
        wait = max(self.wait_seconds, SCHEMA_WAIT_SECONDS)
        if not keep_trying(lambda: self._connection.try_share_schema(self.schema), wait):
            raise CycleAlreadyRunningError(
                f"A cdc_sync older than per-table locks has held schema {self.schema!r} for over {wait:g} s (it "
                "locks the whole schema for its whole cycle): let it finish, and upgrade every worker that syncs "
                "this schema."
            )
        self._shared = True

    def close(self) -> None:
        """Release what is still held (after a failure) and close the lock connection; its session locks and
        lease rows go with it."""
        try:
            for table in sorted(self._tables):
                self.release_table(table)
            if self._shared:
                self._connection.unshare_schema(self.schema)
        finally:
            self._connection.close()

    def __enter__(self) -> CycleLocks:
        try:
            self.share_schema()
        except BaseException:
            self._connection.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
