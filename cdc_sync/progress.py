"""Progress of each table's read: rows done out of an estimate, the rate, and the time left.

A cycle hands its batches through :func:`track`, which tells a :class:`ReadProgress` how many rows have passed.
Two kinds are shown: bars on a terminal (:class:`cdc_sync.progress_bars.ProgressBars`), and, where no one watches
a terminal (a scheduler's log, an Airflow task), :class:`ProgressLines`: one plain line per table about every
``interval`` seconds while its read lasts, and a last line when it ends. A read shorter than the interval prints
nothing, so a routine cycle's log stays as it was.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

# Seconds between two plain lines of one table.
LINE_INTERVAL_SECONDS = 10.0


class TableProgress(ABC):
    """One table's read under way."""

    @abstractmethod
    def advance(self, rows: int) -> None:
        """``rows`` have been read so far."""

    @abstractmethod
    def finish(self, rows: int) -> None:
        """The read ended (done, or given up after a failure) having read ``rows``."""


class ReadProgress(ABC):
    """Where reads report their progress; shared by the tables a cycle reads side by side (thread-safe)."""

    @abstractmethod
    def start(self, table: str, estimate: int | None) -> TableProgress:
        """A read of ``table`` begins; ``estimate`` is about how many rows it will bring, None when unknown."""


def track(progress: ReadProgress, table: str, estimate: int | None,
          batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The batches, each counted into ``progress`` as it arrives."""
    task = progress.start(table, estimate)
    rows = 0
    try:
        for batch in batches:
            rows += batch.num_rows
            task.advance(rows)
            yield batch
    finally:
        task.finish(rows)


def rate_and_time_left(rows: int, estimate: int | None, seconds: float) -> tuple[float, float | None]:
    """Rows per second so far, and the seconds left at that rate (None without an estimate, or once past it)."""
    rate = rows / seconds if seconds > 0 else 0.0
    if estimate is None or rate <= 0 or rows >= estimate:
        return rate, None
    return rate, (estimate - rows) / rate


def duration_text(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class ProgressLines(ReadProgress):
    """Plain lines through ``write`` (stderr, a task's logger): no terminal control, one line per message."""

    def __init__(self, write: Callable[[str], None], interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._write = write
        self.interval = LINE_INTERVAL_SECONDS if interval is None else interval
        self.clock = clock
        self._lock = threading.Lock()  # lanes write from their own threads

    def start(self, table: str, estimate: int | None) -> TableProgress:
        return _TableLines(self, table, estimate)

    def write(self, line: str) -> None:
        with self._lock:
            self._write(line)


class _TableLines(TableProgress):
    def __init__(self, lines: ProgressLines, table: str, estimate: int | None) -> None:
        self.lines = lines
        self.table = table
        self.estimate = estimate
        self.started = self.last_line = lines.clock()
        self.printed = False

    def advance(self, rows: int) -> None:
        now = self.lines.clock()
        if now - self.last_line < self.lines.interval:
            return
        self.last_line = now
        self.printed = True
        rate, left = rate_and_time_left(rows, self.estimate, now - self.started)
        of = "" if self.estimate is None else f" of ~{self.estimate:,}"
        share = f" ({min(rows / self.estimate, 1):.0%})" if self.estimate else ""
        remaining = "" if left is None else f", about {duration_text(left)} left"
        self.lines.write(f"{self.table}: read {rows:,}{of} rows{share}, {rate:,.0f} rows/s{remaining}")

    def finish(self, rows: int) -> None:
        if not self.printed:
            return
        seconds = self.lines.clock() - self.started
        rate, _ = rate_and_time_left(rows, None, seconds)
        self.lines.write(f"{self.table}: read {rows:,} rows in {duration_text(seconds)} ({rate:,.0f} rows/s)")
