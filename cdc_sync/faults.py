"""Named points of a table's cycle where a failure can be injected, to prove that no failure loses or duplicates.

``CDC_SYNC_FAULT=<point>:<mode>`` makes the process fail at that point of every table's cycle that reaches it:

* ``raise``: a terminal :class:`~cdc_sync.errors.DestinationError` (the cycle rolls back, records the failure);
* ``kill``: ``SIGKILL`` to this very process, as an out-of-memory killer or a lost worker would: nothing runs after;
* ``transient``: a :class:`~cdc_sync.errors.TransientDestinationError` the first time only, so the retry succeeds;
* ``transient-always``: a transient error every time, so the retries run out.

Unset (the normal case), a point costs one dictionary lookup. The points are listed in :data:`POINTS`; an unknown
point or mode is refused by :func:`check_environment` before a cycle writes anything, so a misspelt variable cannot
pass a test silently.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TypeVar

from cdc_sync.errors import ConfigError, TerminalDestinationError, TransientDestinationError

ENVIRONMENT_VARIABLE = "CDC_SYNC_FAULT"
POINTS = {
    "read": "the source read has delivered its first batch",
    "staging": "a multi-chunk load has staged and merged its first chunk, before the next",
    "merge": "the rows are in the mirror table (MERGE or append), before deletes",
    "deletes": "the source's keys are staged for delete reconciliation, before rows are marked",
    "column_ddl": "a column was added to the mirror table",
    "history": "history=True: the table's versions are in its history table, before the watermark",
    "state": "the watermark is written, the run record not yet",
    "commit": "everything is written, just before COMMIT",
    "advance": "log capture: every table's cycle committed, before the replication slot advances",
}
# Points only a log-capture cycle reaches.
LOG_CAPTURE_POINTS = frozenset({"advance"})
# Points only a cycle with history=True reaches.
HISTORY_POINTS = frozenset({"history"})
MODES = ("raise", "kill", "transient", "transient-always")

# How often each point was reached while armed in this process (tests read it; transient faults fire once).
reached: Counter[str] = Counter()

Item = TypeVar("Item")


def point(name: str) -> None:
    """Fail here if ``CDC_SYNC_FAULT`` names this point."""
    spec = os.environ.get(ENVIRONMENT_VARIABLE)
    if not spec:
        return
    armed, mode = _parse(spec)
    if armed != name:
        return
    reached[name] += 1
    message = f"fault injected at {name!r} ({POINTS[name]}) by {ENVIRONMENT_VARIABLE}"
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "raise":
        raise TerminalDestinationError(message)
    if mode == "transient-always" or reached[name] == 1:
        raise TransientDestinationError(message)


def check_environment() -> None:
    """Refuse a malformed ``CDC_SYNC_FAULT`` at the start of a cycle, naming the points and modes."""
    spec = os.environ.get(ENVIRONMENT_VARIABLE)
    if spec:
        _parse(spec)


def after_first(name: str, items: Iterable[Item]) -> Iterable[Item]:
    """``items``, with :func:`point` reached once the first item has been handed on (the stream is under way).
    Unarmed, ``items`` itself is returned: no wrapper in the read path."""
    if not os.environ.get(ENVIRONMENT_VARIABLE):
        return items
    return _after_first(name, items)


def _after_first(name: str, items: Iterable[Item]) -> Iterator[Item]:
    iterator = iter(items)
    for item in iterator:
        yield item
        point(name)
        break
    yield from iterator


def _parse(spec: str) -> tuple[str, str]:
    name, _, mode = spec.partition(":")
    if name not in POINTS or mode not in MODES:
        raise ConfigError(
            f"{ENVIRONMENT_VARIABLE}={spec!r} is not a fault: write <point>:<mode> with a point among "
            f"{', '.join(POINTS)} and a mode among {', '.join(MODES)}, or unset it."
        )
    return name, mode
