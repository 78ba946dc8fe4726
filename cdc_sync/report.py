"""What a cycle did, per table: returned by the Python API, printed by the CLI, pushed to XCom by the decorator."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

LOCKED = "locked"


@dataclass
class TableReport:
    table: str
    strategy: str
    status: str = "ok"  # ok | failed | locked (another cycle was syncing it: left to that cycle, not a failure)
    rows_read: int = 0
    rows_written: int = 0
    rows_deleted: int = 0
    seconds: float = 0.0
    high_water_mark: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class CycleReport:
    cycle_id: str
    schema: str
    started_at: datetime
    finished_at: datetime | None = None
    tables: list[TableReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(table.status in ("ok", LOCKED) for table in self.tables)

    @property
    def failed(self) -> dict[str, str]:
        return {t.table: t.error or "failed" for t in self.tables if t.status not in ("ok", LOCKED)}

    def summary(self) -> dict[str, Any]:
        """A small, JSON-friendly digest (what the Airflow task returns as XCom)."""
        return {
            "cycle_id": self.cycle_id,
            "schema": self.schema,
            "ok": self.ok,
            "seconds": round((self.finished_at - self.started_at).total_seconds(), 3) if self.finished_at else None,
            "tables": {
                t.table: {k: v for k, v in asdict(t).items() if k not in {"table", "warnings"} and v is not None}
                for t in self.tables
            },
            "warnings": self.warnings,
        }
