"""Progress bars on a terminal: one per table being read (several at once when tables run in lanes), under a
spinner line that names the last table synced. Rich draws them from a thread of its own, ten times a second."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from cdc_sync.progress import ReadProgress, TableProgress

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


class _RowsColumn(ProgressColumn):
    """``1,234,567 / ~10,000,000 rows  98,765 rows/s`` (the estimate and the rate once known)."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("table"):
            return Text("")
        of = "" if task.total is None else f" / ~{int(task.total):,}"
        rate = "" if not task.speed else f"  {task.speed:,.0f} rows/s"
        return Text(f"{int(task.completed):,}{of} rows{rate}", style="progress.download")


class _TableBarColumn(BarColumn):
    """The bar, for tables only (the status line has none)."""

    def render(self, task: Task) -> RenderableType:
        return super().render(task) if task.fields.get("table") else Text("")


class _TimeLeftColumn(TimeRemainingColumn):
    """The time left, for table bars with an estimate only."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("table") or task.total is None:
            return Text("")
        return super().render(task)


class ProgressBars(ReadProgress):
    """A context manager: the bars show while it is open and vanish when it closes (the report follows)."""

    def __init__(self, console: Console, status: str = "syncing…") -> None:
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), _TableBarColumn(), _RowsColumn(),
                                  _TimeLeftColumn(), console=console, transient=True)
        self._status = self._progress.add_task(status, total=None)

    def __enter__(self) -> ProgressBars:
        self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._progress.stop()

    def __rich__(self) -> RenderableType:
        """The bars as they stand (what the terminal shows)."""
        return self._progress.get_renderable()

    def status(self, text: str) -> None:
        """The line under the bars (what the cycle did last)."""
        self._progress.update(self._status, description=text)

    def start(self, table: str, estimate: int | None) -> TableProgress:
        return _TableBar(self._progress, self._progress.add_task(table, total=estimate, table=True))


class _TableBar(TableProgress):
    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress = progress
        self.task = task

    def advance(self, rows: int) -> None:
        self.progress.update(self.task, completed=rows)

    def finish(self, rows: int) -> None:
        self.progress.remove_task(self.task)
