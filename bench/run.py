"""Benchmark: cdc_sync against dlt and the raw COPY floor, on a real Airflow 3 schema in the local PostgreSQL.

Every measured step is a whole separate process (so interpreter start and imports count), timed by wall clock,
its peak RSS taken from the kernel (``wait4``). Scenarios, per repeat and side by side:

- ``floor``: COPY each default table to memory, parse with Arrow, load into a fresh DuckDB file (bench/floor.py);
- ``adbc floor``: each default table read by ADBC (COPY BINARY → Arrow) and streamed into a fresh DuckDB file
  (bench/floor.py --adbc);
- ``initial``: first sync of the default tables into a fresh DuckDB file;
- ``burst``: a cycle after 20,000 task instances and 100 runs changed (a scheduler finishing 1,000 runs);
- ``no_change``: a cycle right after, with nothing changed.

Usage: .venv/bin/python bench/run.py [--scale 1] [--repeats 3] [--rebuild] [--skip-dlt]
[--capture log|query|both] [--history]

``--capture log`` runs cdc_sync in the log capture mode: its slot and publication are dropped before each initial
sync and at the end. ``--capture both`` runs the two modes side by side in one run, each into its own DuckDB file,
after the same bursts, so that their ratios come from one run. Each cdc_sync cycle also records the source's work
on task_instance (``pg_stat_user_tables`` sequential scans and tuples they read), its CPU time, and in the log mode
the WAL it decoded (from the slot's position before the cycle to the position it read up to).
Results: bench/results/bench-x<scale>-<time>.json, and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import dataset as bench_dataset  # noqa: E402  (bench/ is put on the path above)

from cdc_sync.sources.publication import LogNames  # noqa: E402

RESULTS = BENCH / "results"
BENCH_VENV = ROOT / ".venv-bench"
REQUIREMENTS = BENCH / "requirements-dlt.txt"
CDC_SYNC = Path(sys.executable).with_name("cdc-sync")
# The default tables that exist in an Airflow 3 schema without the FAB auth manager (ab_* and task_fail do not).
TABLES = ("dag", "dag_run", "dag_tag", "import_error", "job", "task_instance")
SCENARIOS = ("initial", "burst", "no_change")
LOG_SLOT = LogNames.for_schema("airflow").slot
TASK_INSTANCE_SCANS_SQL = ("SELECT seq_scan, seq_tup_read FROM pg_stat_user_tables WHERE relname = 'task_instance' "
                           "AND schemaname = current_schema()")


@dataclass
class Measure:
    """One process: wall seconds from spawn to exit, its peak resident memory, and its CPU seconds (user + system:
    steadier than wall time on a shared machine)."""

    seconds: float
    peak_rss_mib: float
    detail: dict = field(default_factory=dict)
    cpu_s: float = 0.0


def run_process(command: list[str], log_name: str, env: dict[str, str] | None = None) -> tuple[Measure, str]:
    """Run a command to completion; its stderr goes to a log file, its stdout is returned."""
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{log_name}.out", "w") as out, open(logs / f"{log_name}.err", "w") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env={**os.environ, **(env or {})}, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    stdout = (logs / f"{log_name}.out").read_text()
    if process.returncode != 0:
        tail = (logs / f"{log_name}.err").read_text()[-3000:]
        raise RuntimeError(f"{' '.join(command[:3])} … exited with {process.returncode}:\n{tail}")
    return Measure(round(seconds, 3), round(usage.ru_maxrss / 1024, 1),
                   cpu_s=round(usage.ru_utime + usage.ru_stime, 3)), stdout


def ensure_bench_venv() -> Path:
    """The dlt environment, created from bench/requirements-dlt.txt and rebuilt when that file changes."""
    marker = BENCH_VENV / ".requirements-sha256"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    python = BENCH_VENV / "bin" / "python"
    if python.exists() and marker.exists() and marker.read_text() == digest:
        return python
    uv = shutil.which("uv") or "uv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([uv, "venv", "-q", "--allow-existing", "-p", base_python, str(BENCH_VENV)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--compile-bytecode", "-p", str(python), "-r", str(REQUIREMENTS)],
                   check=True)
    marker.write_text(digest)
    return python


def source_ready(url: str, data: bench_dataset.Dataset) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as connection:
            count = connection.execute("SELECT count(*) FROM task_instance").fetchone()[0]
            logs = connection.execute("SELECT count(*) FROM log").fetchone()[0]
    except psycopg.Error:
        return False
    return count == data.task_instances and logs >= data.logs


class Bench:
    def __init__(self, url: str, data: bench_dataset.Dataset, work: Path, dlt_python: Path | None,
                 captures: tuple[str, ...] = ("query",), history: bool = False) -> None:
        self.url = url
        self.captures = captures
        self.history = history
        self.data = data
        self.work = work
        self.dlt_python = dlt_python
        self.dlt_path = work / "dlt.duckdb"
        self.dlt_pipelines = work / "dlt_pipelines"

    def engines(self) -> dict[str, Callable[[str], Measure]]:
        """The engines of this run by name, each a callable timing one process: cdc_sync once per capture mode
        (``cdc_sync`` for the query mode, ``cdc_sync_log`` for the log mode), then dlt unless skipped."""
        engines: dict[str, Callable[[str], Measure]] = {
            engine_name(capture): functools.partial(self.cdc_sync, capture) for capture in self.captures}
        if self.dlt_python is not None:
            engines["dlt"] = self.dlt
        return engines

    def cdc_path(self, capture: str) -> Path:
        return self.work / f"{engine_name(capture)}.duckdb"

    def reset(self) -> None:
        paths = [self.cdc_path(capture) for capture in self.captures]
        for path in (*paths, self.dlt_path, self.dlt_pipelines):
            if path.is_dir():
                shutil.rmtree(path)
            for candidate in (path, Path(f"{path}.wal")):
                candidate.unlink(missing_ok=True)
        if "log" in self.captures:
            self.drop_log()

    def drop_log(self) -> None:
        """The log mode's slot and publication, so an initial sync starts from nothing and no slot is left behind."""
        subprocess.run([str(CDC_SYNC), "capture", "drop", "--source", self.url, "--schema", "airflow"], check=True,
                       capture_output=True)

    def floor(self, label: str) -> Measure:
        target = self.work / "floor.duckdb"
        target.unlink(missing_ok=True)
        measure, stdout = run_process([sys.executable, str(BENCH / "floor.py"), self.url, str(target), *TABLES],
                                      f"floor-{label}")
        phases = json.loads(stdout)
        total = {key: round(sum(table[key] for table in phases.values()), 3)
                 for key in ("copy_s", "to_arrow_s", "load_s", "floor_s")}
        measure.detail = {"all_tables": total,
                          "task_instance": {k: round(v, 3) for k, v in phases["task_instance"].items()}}
        target.unlink(missing_ok=True)
        return measure

    def adbc_floor(self, label: str) -> Measure:
        target = self.work / "adbc_floor.duckdb"
        target.unlink(missing_ok=True)
        measure, stdout = run_process(
            [sys.executable, str(BENCH / "floor.py"), "--adbc", self.url, str(target), *TABLES], f"adbc_floor-{label}")
        phases = json.loads(stdout)
        measure.detail = {"floor_s": round(sum(table["floor_s"] for table in phases.values()), 3),
                          "task_instance_floor_s": round(phases["task_instance"]["floor_s"], 3)}
        target.unlink(missing_ok=True)
        return measure

    def cdc_sync(self, capture: str, label: str) -> Measure:
        command = [str(CDC_SYNC), "run", "--source", self.url, "--destination", f"duckdb:///{self.cdc_path(capture)}",
                   "--schema", "airflow", "--capture", capture, "--json",
                   *(["--history"] if self.history else [])]
        scans_before, slot_before = task_instance_scans(self.url), slot_position(self.url)
        measure, stdout = run_process(command, f"{engine_name(capture)}-{label}")
        scans_after, slot_after = task_instance_scans(self.url), slot_position(self.url)
        report = json.loads(stdout)
        if not report["ok"]:
            raise RuntimeError(f"cdc_sync reported failed tables: {report['tables']}")
        measure.detail = {"rows_read": {name: t["rows_read"] for name, t in report["tables"].items()},
                          "rows_written": {name: t["rows_written"] for name, t in report["tables"].items()},
                          "cycle_seconds": report["seconds"],
                          "task_instance_seq_scans": scans_after[0] - scans_before[0],
                          "task_instance_seq_tup_read": scans_after[1] - scans_before[1]}
        if capture == "log":
            # The WAL this cycle decoded: from where the slot stood before it to the position it read up to (where
            # the slot stands after it; 0 for an initial sync, which makes the slot).
            measure.detail["wal_decoded_bytes"] = (slot_after - slot_before
                                                   if slot_before is not None and slot_after is not None else 0)
        return measure

    def dlt(self, label: str) -> Measure:
        assert self.dlt_python is not None
        dlt_url = self.url.replace("postgresql://", "postgresql+psycopg2://")
        command = [str(self.dlt_python), str(BENCH / "dlt_sync.py"), dlt_url, str(self.dlt_path),
                   str(self.dlt_pipelines), *TABLES]
        measure, _ = run_process(command, f"dlt-{label}", env={"RUNTIME__DLTHUB_TELEMETRY": "false"})
        return measure


def engine_name(capture: str) -> str:
    return "cdc_sync" if capture == "query" else f"cdc_sync_{capture}"


def task_instance_scans(url: str) -> tuple[int, int]:
    """Sequential scans of task_instance so far, and the tuples they read (the source's work)."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT pg_stat_clear_snapshot()")
        return connection.execute(TASK_INSTANCE_SCANS_SQL).fetchone()


def slot_position(url: str) -> int | None:
    """The log mode's slot's confirmed position (as a byte offset in the WAL), or None when there is no slot."""
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute("SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots "
                                 "WHERE slot_name = %s", (LOG_SLOT,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def mirror_counts(path: Path, tables: tuple[str, ...]) -> dict[str, int]:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as connection:
        return {t: connection.execute(f'SELECT count(*) FROM airflow."{t}"').fetchone()[0] for t in tables}


def source_counts(url: str, tables: tuple[str, ...]) -> dict[str, int]:
    with psycopg.connect(url) as connection:
        return {t: connection.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def compile_bytecode() -> None:
    """Compile cdc_sync's modules as an install from a wheel does. The project is installed editable, and where
    ``PYTHONDONTWRITEBYTECODE`` is set no import writes ``__pycache__``: every cdc_sync process would compile its
    ~90 modules from source (60-70 ms), while dlt's environment is installed with its bytecode compiled."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "cdc_sync")], check=True)


def run(scale: int, repeats: int, rebuild: bool, skip_dlt: bool, capture: str = "query",
        history: bool = False) -> dict:
    captures = ("query", "log") if capture == "both" else (capture,)
    compile_bytecode()
    data = bench_dataset.Dataset(scale)
    dlt_python = None if skip_dlt else ensure_bench_venv()
    url = bench_dataset.PG_URL_TEMPLATE.format(database=data.database)
    build_seconds = None
    if rebuild or not source_ready(url, data):
        print(f"Building the source: {data.task_instances:,} task instances, {data.runs:,} runs, "
              f"{data.logs:,} logs …", flush=True)
        url, build_seconds = bench_dataset.build(data)
    work = RESULTS / f"work-x{scale}"
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(url, data, work, dlt_python, captures, history)
    engines = bench.engines()
    runs: dict[str, dict[str, list[Measure]]] = {e: {s: [] for s in SCENARIOS} for e in engines}
    floors: list[Measure] = []
    adbc_floors: list[Measure] = []
    bursts = []
    for repeat in range(repeats):
        print(f"repeat {repeat + 1}/{repeats}", flush=True)
        bench.reset()
        bench_dataset.settle(url)
        floors.append(bench.floor(f"x{scale}-r{repeat}"))
        adbc_floors.append(bench.adbc_floor(f"x{scale}-r{repeat}"))
        for engine, measure in engines.items():
            runs[engine]["initial"].append(measure(f"x{scale}-r{repeat}-initial"))
        if repeat == 0:
            expected = source_counts(url, TABLES)
            for each in captures:
                mirrored = mirror_counts(bench.cdc_path(each), TABLES)
                if mirrored != expected:
                    raise RuntimeError(f"cdc_sync ({each}) mirror differs from the source: {mirrored} != {expected}")
        bursts.append(bench_dataset.burst(url, data, repeat + scale * 100))
        for engine, measure in engines.items():
            runs[engine]["burst"].append(measure(f"x{scale}-r{repeat}-burst"))
        for engine, measure in engines.items():
            runs[engine]["no_change"].append(measure(f"x{scale}-r{repeat}-no_change"))
    bench.reset()
    result = summarize(scale, repeats, data, build_seconds, runs, floors, adbc_floors, bursts)
    result["capture"] = capture
    result["command"] += f" --capture {capture}" + " --history" * history
    return result


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def summarize(scale: int, repeats: int, data: bench_dataset.Dataset, build_seconds: float | None,
              runs: dict[str, dict[str, list[Measure]]], floors: list[Measure], adbc_floors: list[Measure],
              bursts: list) -> dict:
    summary: dict = {}
    for engine, scenarios in runs.items():
        summary[engine] = {
            scenario: {"median_s": median([m.seconds for m in measures]),
                       "median_cpu_s": median([m.cpu_s for m in measures]),
                       "peak_rss_mib": max(m.peak_rss_mib for m in measures),
                       **({"wal_decoded_bytes": max(m.detail.get("wal_decoded_bytes", 0) for m in measures)}
                          if engine.startswith("cdc_sync") else {}),
                       **({"task_instance_seq_scans": max(m.detail["task_instance_seq_scans"] for m in measures),
                           "task_instance_seq_tup_read": max(m.detail["task_instance_seq_tup_read"] for m in measures)}
                          if engine.startswith("cdc_sync") else {})}
            for scenario, measures in scenarios.items()
        }
    floor_s = median([f.detail["all_tables"]["floor_s"] for f in floors])
    summary["floor"] = {
        "process_median_s": median([f.seconds for f in floors]),
        "read_plus_load_s": floor_s,
        "copy_s": median([f.detail["all_tables"]["copy_s"] for f in floors]),
        "to_arrow_s": median([f.detail["all_tables"]["to_arrow_s"] for f in floors]),
        "load_s": median([f.detail["all_tables"]["load_s"] for f in floors]),
        "task_instance_floor_s": median([f.detail["task_instance"]["floor_s"] for f in floors]),
        "peak_rss_mib": max(f.peak_rss_mib for f in floors),
    }
    adbc_floor_s = median([f.detail["floor_s"] for f in adbc_floors])
    summary["adbc_floor"] = {
        "process_median_s": median([f.seconds for f in adbc_floors]),
        "read_plus_load_s": adbc_floor_s,
        "task_instance_floor_s": median([f.detail["task_instance_floor_s"] for f in adbc_floors]),
        "peak_rss_mib": max(f.peak_rss_mib for f in adbc_floors),
    }
    ratios: dict[str, float] = {}
    adbc_process_s = summary["adbc_floor"]["process_median_s"]
    for engine in (name for name in runs if name.startswith("cdc_sync")):
        initial = summary[engine]["initial"]["median_s"]
        # Against the floors' in-process seconds, and against the ADBC floor as a whole process like cdc_sync's own
        # (interpreter start, imports and connections on both sides: how the issue measured that floor).
        ratios[f"{engine}_initial_over_floor"] = round(initial / floor_s, 2)
        ratios[f"{engine}_initial_over_adbc_floor"] = round(initial / adbc_floor_s, 2)
        ratios[f"{engine}_initial_over_adbc_floor_process"] = round(initial / adbc_process_s, 2)
        for scenario in SCENARIOS:
            if "dlt" in summary:
                ratios[f"dlt_over_{engine}_{scenario}"] = round(
                    summary["dlt"][scenario]["median_s"] / summary[engine][scenario]["median_s"], 2)
    if "cdc_sync" in summary and "cdc_sync_log" in summary:
        for scenario in SCENARIOS:
            ratios[f"log_over_query_{scenario}"] = round(
                summary["cdc_sync_log"][scenario]["median_s"] / summary["cdc_sync"][scenario]["median_s"], 2)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f".venv/bin/python bench/run.py --scale {scale} --repeats {repeats}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "dataset": {**asdict(data), "task_instances": data.task_instances, "dag_runs": data.runs,
                    "logs": data.logs, "dags": data.dags, "jobs": data.jobs, "build_seconds": build_seconds,
                    "bursts_changed_task_instances_and_runs": bursts},
        "tables": list(TABLES),
        "summary": summary,
        "ratios": ratios,
        "raw": {engine: {s: [asdict(m) for m in ms] for s, ms in scenarios.items()}
                for engine, scenarios in runs.items()} | {"floor": [asdict(f) for f in floors],
                                                          "adbc_floor": [asdict(f) for f in adbc_floors]},
    }


def markdown(result: dict) -> str:
    summary, ratios = result["summary"], result["ratios"]
    engines = [name for name in summary if name.startswith("cdc_sync") or name == "dlt"]
    labels = {"initial": "initial sync (default tables)", "burst": "cycle after 20,000 TI + 100 runs changed",
              "no_change": "cycle with no change"}
    titles = {"cdc_sync": "cdc_sync, query", "cdc_sync_log": "cdc_sync, log", "dlt": "dlt"}
    lines = [
        f"Scale {result['dataset']['scale']}: {result['dataset']['task_instances']:,} task instances, "
        f"{result['dataset']['dag_runs']:,} dag runs, {result['dataset']['logs']:,} log rows; "
        f"medians of {len(result['raw']['floor'])} runs, each a whole process (start included).",
        "",
        "| scenario | " + " | ".join(f"{titles[e]} | CPU | peak RSS" for e in engines) + " |",
        "|---|" + "---:|---:|---:|" * len(engines),
    ]
    for scenario in SCENARIOS:
        cells = [f"{summary[e][scenario]['median_s']:.2f} s | {summary[e][scenario]['median_cpu_s']:.2f} s | "
                 f"{summary[e][scenario]['peak_rss_mib']:.0f} MiB" for e in engines]
        lines.append(f"| {labels[scenario]} | " + " | ".join(cells) + " |")
    cdc_engines = [e for e in engines if e != "dlt"]
    lines += ["", "| source work, " + " | ".join(f"{titles[e]}" for e in cdc_engines) + " |",
              "|---|" + "---:|" * len(cdc_engines)]
    for scenario in SCENARIOS:
        cells = []
        for engine in cdc_engines:
            cdc = summary[engine][scenario]
            wal = (f", WAL decoded {cdc['wal_decoded_bytes'] / 2**20:.1f} MiB" if engine == "cdc_sync_log" else "")
            cells.append(f"{cdc['task_instance_seq_scans']} task_instance seq scans "
                         f"({cdc['task_instance_seq_tup_read']:,} tuples){wal}")
        lines.append(f"| {labels[scenario]} | " + " | ".join(cells) + " |")
    lines += ["", "Ratios: " + ", ".join(f"{name} {value:.2f}" for name, value in ratios.items()) + "."]
    floor = summary["floor"]
    adbc = summary["adbc_floor"]
    lines += [
        "",
        f"Raw floor, same tables (COPY → Arrow → DuckDB, in one process): COPY {floor['copy_s']:.2f} s, "
        f"into Arrow {floor['to_arrow_s']:.2f} s, DuckDB load {floor['load_s']:.2f} s: read + load "
        f"**{floor['read_plus_load_s']:.2f} s** (task_instance alone {floor['task_instance_floor_s']:.2f} s; "
        f"whole process {floor['process_median_s']:.2f} s, peak {floor['peak_rss_mib']:.0f} MiB).",
        "",
        f"ADBC floor, same tables (COPY BINARY → Arrow → DuckDB, streamed): read + load "
        f"**{adbc['read_plus_load_s']:.2f} s** (task_instance alone {adbc['task_instance_floor_s']:.2f} s; "
        f"whole process **{adbc['process_median_s']:.2f} s**, peak {adbc['peak_rss_mib']:.0f} MiB).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="1 → 1,000,000 task instances (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per scenario; medians are reported")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the source database even if present")
    parser.add_argument("--skip-dlt", action="store_true", help="time cdc_sync and the floor only")
    parser.add_argument("--drop", action="store_true", help="drop the source database at the end")
    parser.add_argument("--capture", choices=("log", "query", "both"), default="query",
                        help="cdc_sync's capture mode (log: PostgreSQL logical decoding; both: side by side)")
    parser.add_argument("--history", action="store_true", help="cdc_sync keeps <table>__history tables")
    args = parser.parse_args()
    result = run(args.scale, args.repeats, args.rebuild, args.skip_dlt, args.capture, args.history)
    result["command"] += " --skip-dlt" * args.skip_dlt + " --drop" * args.drop
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"bench-x{args.scale}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2))
    if args.drop:
        bench_dataset.drop(bench_dataset.Dataset(args.scale))
    print(markdown(result))
    print(f"\nCommand: {result['command']}\nResults: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
