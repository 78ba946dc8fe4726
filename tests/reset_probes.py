"""Records the source-reset check's two probes on a snapshot class: keyed lookups and table scans."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest


@dataclass
class ResetProbes:
    """``looked_up``: "table:found" per keyed lookup of the row at the watermark; ``scanned``: tables scanned."""

    looked_up: list[str] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.looked_up.clear()
        self.scanned.clear()


def record_reset_probes(monkeypatch: pytest.MonkeyPatch, snapshot_class: type) -> ResetProbes:
    probes = ResetProbes()
    row_reaches, reaches = snapshot_class.row_reaches, snapshot_class.reaches

    def recording_lookup(self, table, *arguments):
        found = row_reaches(self, table, *arguments)
        probes.looked_up.append(f"{table.name}:{found}")
        return found

    def recording_scan(self, table, *arguments):
        probes.scanned.append(table.name)
        return reaches(self, table, *arguments)

    monkeypatch.setattr(snapshot_class, "row_reaches", recording_lookup)
    monkeypatch.setattr(snapshot_class, "reaches", recording_scan)
    return probes
