"""Query-mode burst and no-change cycles of two cdc_sync builds, alternating, each on its own mirror of one source.

Used to show that a change leaves the small cycles no slower than the code before it. Each build runs from its own
venv (a worktree of the older commit, installed there), so both read the same source after the same bursts.

    python bench/cycles_ab.py OLD_CDC_SYNC NEW_CDC_SYNC ROUNDS [SCALE]

e.g. ``python bench/cycles_ab.py ../old/.venv/bin/cdc-sync .venv/bin/cdc-sync 7``. The source must exist
(``bench/run.py --scale SCALE`` builds it). Prints each build's wall times and their medians.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dataset as bench_dataset  # the benchmark's own module, beside this script


def cycle(executable: str, source: str, mirror: Path) -> float:
    """One `cdc-sync run` in query mode (CDC_SYNC_CAPTURE: older builds have no --capture); its wall seconds."""
    command = [executable, "run", "--source", source, "--destination", f"duckdb:///{mirror}", "--schema", "airflow",
               "--json"]
    start = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "CDC_SYNC_CAPTURE": "query"},
                              check=False)
    seconds = time.perf_counter() - start
    if finished.returncode != 0 or not json.loads(finished.stdout)["ok"]:
        raise RuntimeError(f"{executable} failed: {finished.stdout[-2000:]}{finished.stderr[-2000:]}")
    return seconds


def main(old: str, new: str, rounds: int, scale: int) -> None:
    data = bench_dataset.Dataset(scale)
    source = bench_dataset.PG_URL_TEMPLATE.format(database=data.database)
    builds = {"old": old, "new": new}
    with tempfile.TemporaryDirectory() as work:
        mirrors = {name: Path(work) / f"{name}.duckdb" for name in builds}
        for name, executable in builds.items():
            print(f"{name} initial sync {cycle(executable, source, mirrors[name]):.2f} s", flush=True)
        times: dict[str, dict[str, list[float]]] = {name: {"burst": [], "no_change": []} for name in builds}
        for number in range(rounds):
            bench_dataset.burst(source, data, 500 + number)
            order = list(builds) if number % 2 == 0 else list(reversed(builds))
            for scenario in ("burst", "no_change"):
                for name in order:
                    times[name][scenario].append(cycle(builds[name], source, mirrors[name]))
    for name, scenarios in times.items():
        for scenario, values in scenarios.items():
            listed = " / ".join(f"{value:.2f}" for value in values)
            print(f"{name} {scenario}: median {statistics.median(values):.2f} s ({listed})")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    main(arguments[0], arguments[1], int(arguments[2]), int(arguments[3]) if len(arguments) > 3 else 1)
