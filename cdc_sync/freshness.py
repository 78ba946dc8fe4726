"""Is the mirror fresh? Each table's verdict against a maximum lag, for ``cdc-sync status --max-lag``.

A table's lag now is how far the mirror may be behind the source at this moment: the source time up to which its
last successful cycle made it complete (``last_success_at - lag_seconds`` in ``_cdc_watermarks``), subtracted from
now. It is ``lag_seconds`` as that cycle measured it, plus the time since. A table is

* ``failed`` when its last attempt failed (``last_error`` is set; the next success clears it), whatever its lag;
* ``stale`` when its lag now exceeds the maximum, or when no cycle ever synced it;
* ``fresh`` otherwise.

A source transaction left open longer than the maximum makes its tables stale too: rows it writes can still
arrive with old timestamps, so the mirror is complete only up to its start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cdc_sync.state import Watermark

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str) -> float:
    """Seconds in ``30m``, ``90s``, ``1h30m``, ``2d``: numbers each followed by a unit among s, m, h and d."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(number + unit for number, unit in parts) != compact:
        raise ValueError(f"{text!r} is not a duration: write a number and a unit (s, m, h or d), e.g. 30m, 90s, "
                         "1h30m or 2d.")
    seconds = sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r} is no time at all: give a positive duration, e.g. 30m.")
    return seconds


@dataclass(frozen=True)
class TableFreshness:
    watermark: Watermark
    verdict: str  # fresh | stale | failed
    # Seconds the mirror may be behind the source now; None when no cycle ever synced the table.
    current_lag_seconds: float | None

    def summary(self) -> dict[str, Any]:
        return {**asdict(self.watermark), "verdict": self.verdict, "current_lag_seconds": self.current_lag_seconds}


@dataclass(frozen=True)
class FreshnessReport:
    checked_at: datetime
    max_lag_seconds: float
    tables: tuple[TableFreshness, ...]

    @property
    def ok(self) -> bool:
        """Every table fresh. A schema no cycle has synced has nothing fresh, so it is not ok."""
        return bool(self.tables) and all(table.verdict == "fresh" for table in self.tables)

    def named(self, verdict: str) -> list[str]:
        return [table.watermark.table_name for table in self.tables if table.verdict == verdict]

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked_at": self.checked_at,
            "max_lag_seconds": self.max_lag_seconds,
            "stale": self.named("stale"),
            "failed": self.named("failed"),
            "tables": [table.summary() for table in self.tables],
        }


def check_freshness(watermarks: list[Watermark], max_lag_seconds: float, now: datetime | None = None,
                    tables: Iterable[str] | None = None) -> FreshnessReport:
    """Each table's verdict at ``now`` (default: this machine's clock, in UTC).

    ``tables``: judge only these, in this order; one without a watermark was never synced, so it is stale. A
    table no longer synced keeps its watermark and would turn stale: naming the synced tables leaves it out."""
    now = now or datetime.now(UTC)
    if tables is not None:
        known = {mark.table_name: mark for mark in watermarks}
        watermarks = [known.get(name) or Watermark(table_name=name, strategy="") for name in dict.fromkeys(tables)]
    return FreshnessReport(now, max_lag_seconds, tuple(_judge(mark, max_lag_seconds, now) for mark in watermarks))


def _judge(mark: Watermark, max_lag_seconds: float, now: datetime) -> TableFreshness:
    lag = None
    if mark.last_success_at is not None:
        complete_until = _aware(mark.last_success_at) - timedelta(seconds=mark.lag_seconds or 0.0)
        lag = round((now - complete_until).total_seconds(), 3)
    if mark.last_error is not None:
        verdict = "failed"
    elif lag is None or lag > max_lag_seconds:
        verdict = "stale"
    else:
        verdict = "fresh"
    return TableFreshness(mark, verdict, lag)


def _aware(moment: datetime) -> datetime:
    """State timestamps are UTC; a warehouse may hand them back without their zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
