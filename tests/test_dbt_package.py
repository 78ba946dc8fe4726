"""The dbt package (dbt/airflow_mirror) on mirrors that cdc_sync made from real Airflow 3.3 and 2.11 databases.

Each database holds two real runs of tests/dags_analytics/analytics_probe.py (``airflow dags test``: a task
retried into success, a task failing every try, mapped tasks with one retry), one task cleared afterwards
(``airflow tasks clear``) and the older run purged by ``airflow db clean`` after the first cycle. A user's project
installs the package as a local package, and ``dbt build`` runs with dbt-duckdb and dbt-postgres. Every mart is
checked against figures read from the source database directly, before the purge."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import psycopg
import pytest

import cdc_sync
from tests.airflow_runs import PROBE_DAG_ID, clean_and_clear_task, run_probe_dag
from tests.airflow_schema import (
    AIRFLOW2_BIN,
    pg_airflow2_template,
    pg_airflow3_template,
    pg_execute,
    pg_recreate_database,
)
from tests.dbt_runner import (
    ANALYTICS_SCHEMA,
    MARTS,
    build_in_parallel,
    duckdb_target,
    postgres_target,
    require_dbt,
    write_project,
)

pytestmark = pytest.mark.slow
MIRROR_SCHEMA = "airflow"
LOGICAL_DATES = ("2026-01-05", "2026-01-06")
CLEARED_TASK, CLEARED_DATE = "^flaky$", "2026-01-06"
# `dags test` starts a run at its logical date, so this purges the first run (and, by cascade, its tasks).
CLEAN_BEFORE = "2026-01-05T12:00:00+00:00"
ADAPTERS = ("duckdb", "postgres")


@dataclass
class SourceTruth:
    """What the source database itself says, read with plain SQL before ``airflow db clean``."""

    runs: dict[tuple[str, str], dict]
    failures: Counter  # (run_id, task_id, map_index) -> failed tries
    successes: Counter  # (run_id, task_id, map_index) -> successful tries


@dataclass
class Built:
    truth: SourceTruth
    purged_runs: set[tuple[str, str]]
    mirrored_tables: set[str]
    marts: dict[str, dict[str, tuple[list[str], list[dict]]]]  # adapter -> mart -> (columns, rows)


def _read_truth(url: str, version: str) -> SourceTruth:
    with psycopg.connect(url) as source:
        runs = {(dag_id, run_id): {"state": state, "start_date": start, "end_date": end, "interval_end": interval_end}
                for dag_id, run_id, state, start, end, interval_end in source.execute(
                    "SELECT dag_id, run_id, state, start_date, end_date, data_interval_end FROM dag_run")}
        successes = Counter()
        for table in ("task_instance", "task_instance_history"):
            for row in source.execute(f"SELECT run_id, task_id, map_index FROM {table} WHERE state = 'success'"):
                successes[row] += 1
        failures = Counter()
        # Airflow 3 keeps each earlier try in task_instance_history; Airflow 2 records every failed try in task_fail.
        queries = (["SELECT run_id, task_id, map_index FROM task_instance_history "
                    "WHERE state IN ('failed', 'up_for_retry')",
                    "SELECT run_id, task_id, map_index FROM task_instance WHERE state = 'failed'"]
                   if version == "3" else ["SELECT run_id, task_id, map_index FROM task_fail"])
        for query in queries:
            for row in source.execute(query):
                failures[row] += 1
    return SourceTruth(runs, failures, successes)


def _merge_purged(before: SourceTruth, after: SourceTruth, purged: set[tuple[str, str]]) -> SourceTruth:
    """The source as it is now, plus what it said about the runs that ``airflow db clean`` purged since."""
    purged_run_ids = {run_id for _, run_id in purged}
    runs = {**after.runs, **{key: before.runs[key] for key in purged}}
    failures, successes = Counter(after.failures), Counter(after.successes)
    for counter, earlier in ((failures, before.failures), (successes, before.successes)):
        counter.update({key: n for key, n in earlier.items() if key[0] in purged_run_ids})
    return SourceTruth(runs, failures, successes)


def _run_keys(url: str) -> set[tuple[str, str]]:
    with psycopg.connect(url) as source:
        return set(source.execute("SELECT dag_id, run_id FROM dag_run").fetchall())


def _read_marts(adapter: str, duckdb_path: Path, pg_url: str) -> dict[str, tuple[list[str], list[dict]]]:
    connection = duckdb.connect(str(duckdb_path), read_only=True) if adapter == "duckdb" else psycopg.connect(pg_url)
    try:
        marts = {}
        for mart in MARTS:
            cursor = connection.execute(f"SELECT * FROM {ANALYTICS_SCHEMA}.{mart}")
            columns = [description[0] for description in cursor.description]
            marts[mart] = (columns, [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()])
        return marts
    finally:
        connection.close()


TEMPLATES = {"3": pg_airflow3_template, "2": pg_airflow2_template}


def _build(version: str, source_name: str, mirror_name: str, directory: Path) -> Built:
    source = pg_recreate_database(source_name, template=TEMPLATES[version]())
    mirror_pg = pg_recreate_database(mirror_name)
    driver = "postgresql+psycopg://" if version == "3" else "postgresql+psycopg2://"
    airflow_bin = None if version == "3" else str(AIRFLOW2_BIN)
    conn = source.replace("postgresql://", driver)
    run_probe_dag(conn, LOGICAL_DATES, airflow_bin=airflow_bin)
    before_clean = _read_truth(source, version)

    mirror_duckdb = directory / "mirror.duckdb"
    destinations = (f"duckdb:///{mirror_duckdb}", mirror_pg)
    options = {"schema": MIRROR_SCHEMA, "additional_tables": ["task_instance_history"]}
    for destination in destinations:
        assert cdc_sync.sync(source, destination, **options).ok
    # Cleared after the purge: Airflow 2's db clean keeps the run with the latest start_date, and a clear
    # empties a run's start_date.
    clean_and_clear_task(conn, CLEAN_BEFORE, CLEARED_TASK, CLEARED_DATE, airflow_bin=airflow_bin)
    purged = set(before_clean.runs) - _run_keys(source)
    truth = _merge_purged(before_clean, _read_truth(source, version), purged)
    for destination in destinations:
        assert cdc_sync.sync(source, destination, **options).ok
    with psycopg.connect(mirror_pg) as connection:
        mirrored = {row[0] for row in connection.execute(
            f'SELECT table_name FROM "{MIRROR_SCHEMA}"._cdc_watermarks')}

    project = write_project(directory / "project",
                            {"duckdb": duckdb_target(mirror_duckdb), "postgres": postgres_target(mirror_name)})
    build_in_parallel(project, list(ADAPTERS), "--vars", "{airflow_mirror_failure_days: null}")
    marts = {adapter: _read_marts(adapter, mirror_duckdb, mirror_pg) for adapter in ADAPTERS}
    return Built(truth, purged, mirrored, marts)


def _needed(session: pytest.Session, version: str) -> bool:
    """Whether a test of this session reads the build of this Airflow version."""
    for item in session.items:
        names = getattr(item, "fixturenames", ())
        callspec = getattr(item, "callspec", None)
        if f"built_airflow{version}" in names or (
                "built" in names and callspec is not None and callspec.params.get("built") == version):
            return True
    return False


@pytest.fixture(scope="session")
def builds(postgres_available, tmp_path_factory, request: pytest.FixtureRequest) -> dict[str, Future]:
    """The builds of the Airflow versions this session's tests read, made at the same time: each mostly waits on
    its own ``airflow`` and ``dbt`` processes, so both together take little more than the longer one. Each
    version's outcome (its Built, or its failure) is kept apart."""
    require_dbt()
    versions = [version for version in TEMPLATES if _needed(request.session, version)
                and (version != "2" or AIRFLOW2_BIN.exists())]  # else built_airflow2 skips (or fails in CI)
    suffix = uuid.uuid4().hex[:8]
    names = {version: (f"cdc_dbt_src{version}_{suffix}", f"cdc_dbt_dst{version}_{suffix}") for version in versions}
    try:
        with ThreadPoolExecutor(max(len(versions), 1)) as pool:
            futures = {version: pool.submit(_build, version, *names[version],
                                            tmp_path_factory.mktemp(f"dbt-airflow{version}"))
                       for version in versions}
        yield futures
    finally:
        for name in (name for pair in names.values() for name in pair):
            pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def built_airflow3(builds: dict[str, Future]) -> Built:
    return builds["3"].result()


@pytest.fixture(scope="session")
def built_airflow2(airflow2_available, builds: dict[str, Future]) -> Built:
    return builds["2"].result()


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds()


def _percentile(values: list[float], fraction: float) -> float:
    """percentile_cont: linear interpolation between the two nearest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _assert_close(actual, expected, what: str) -> None:
    assert (actual is None) == (expected is None), f"{what}: {actual} != {expected}"
    if expected is not None:
        assert abs(float(actual) - expected) <= 0.002, f"{what}: {actual} != {expected}"


@pytest.fixture(params=["3", "2"])
def built(request: pytest.FixtureRequest) -> Built:
    return request.getfixturevalue(f"built_airflow{request.param}")


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_dag_runs_match_the_source(built: Built, adapter: str) -> None:
    truth = built.truth
    assert len(built.purged_runs) == 1, "airflow db clean purged the first run"
    rows = {(r["dag_id"], r["run_id"]): r for r in built.marts[adapter]["dag_runs"][1]}
    assert set(rows) == set(truth.runs), "every run, the purged one kept as history"
    for key, source in truth.runs.items():
        row = rows[key]
        _assert_close(row["duration_seconds"], _seconds(source["start_date"], source["end_date"]), f"{key} duration")
        _assert_close(row["start_delay_seconds"], _seconds(source["interval_end"], source["start_date"]),
                      f"{key} start delay")
        assert row["state"] == source["state"]
        assert row["outcome"] == {"success": "success", "failed": "failed"}.get(source["state"], "unfinished")
        assert row["is_deleted"] == (key in built.purged_runs)
        run_id = key[1]
        failed = sum(n for (run, _, _), n in truth.failures.items() if run == run_id)
        succeeded = sum(n for (run, _, _), n in truth.successes.items() if run == run_id)
        assert failed > 0 and (row["failed_tries"], row["tries"]) == (failed, failed + succeeded), key


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_task_runs_have_one_row_per_try_with_mapped_tasks_and_retries(built: Built, adapter: str) -> None:
    rows = built.marts[adapter]["task_runs"][1]
    outcomes = Counter()
    for row in rows:
        outcomes[(row["run_id"], row["task_id"], row["map_index"], row["outcome"])] += 1
    expected = Counter()
    for key, count in built.truth.failures.items():
        expected[(*key, "failed")] += count
    for key, count in built.truth.successes.items():
        expected[(*key, "success")] += count
    assert outcomes == expected
    for run_id in {run for _, run in built.truth.runs}:
        mapped = {row["map_index"] for row in rows if row["run_id"] == run_id and row["task_id"] == "double"}
        assert mapped == {0, 1, 2}
        tries = sorted((row["try_number"], row["outcome"]) for row in rows
                       if row["run_id"] == run_id and row["task_id"] == "double" and row["map_index"] == 2)
        assert tries == [(1, "failed"), (2, "success")], "the mapped retry"
    for row in rows:
        _assert_close(row["run_seconds"], _seconds(row["start_date"], row["end_date"]), "run_seconds")
        assert row["operator"] and row["hostname"], row


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_task_failures_count_every_failed_try_and_what_came_next(built: Built, adapter: str) -> None:
    rows = built.marts[adapter]["task_failures"][1]
    by_instance: dict[tuple, list[dict]] = {}
    for row in rows:
        by_instance.setdefault((row["run_id"], row["task_id"], row["map_index"]), []).append(row)
    assert {key: len(found) for key, found in by_instance.items()} == dict(built.truth.failures)
    for key, found in by_instance.items():
        found.sort(key=lambda row: row["try_number"])
        final = "success" if built.truth.successes[key] else "none"
        assert [row["next_outcome"] for row in found] == ["failed"] * (len(found) - 1) + [final], key
        assert {row["tries_of_task_instance"] for row in found} == {
            built.truth.failures[key] + built.truth.successes[key]}


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_dag_daily_counts_rates_and_percentiles(built: Built, adapter: str) -> None:
    expected: dict[tuple, dict] = {}
    for (dag_id, _), run in built.truth.runs.items():
        if run["start_date"] is None:
            continue
        day = expected.setdefault((dag_id, run["start_date"].astimezone(dt.UTC).date()),
                                  {"runs": 0, "successes": 0, "failures": 0, "durations": []})
        day["runs"] += 1
        if run["state"] in ("success", "failed"):
            day["successes" if run["state"] == "success" else "failures"] += 1
            day["durations"].append(_seconds(run["start_date"], run["end_date"]))
    rows = {(r["dag_id"], r["run_date"]): r for r in built.marts[adapter]["dag_daily"][1]}
    assert set(rows) == set(expected) and expected
    for key, day in expected.items():
        row = rows[key]
        assert (row["runs"], row["successes"], row["failures"]) == (day["runs"], day["successes"], day["failures"])
        finished = day["successes"] + day["failures"]
        _assert_close(row["failure_rate"], day["failures"] / finished if finished else None, f"{key} rate")
        durations = day["durations"]
        _assert_close(row["p50_duration_seconds"], _percentile(durations, 0.5) if durations else None, "p50")
        _assert_close(row["p95_duration_seconds"], _percentile(durations, 0.95) if durations else None, "p95")


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_sync_health_reports_every_mirrored_table(built: Built, adapter: str) -> None:
    rows = built.marts[adapter]["sync_health"][1]
    assert {row["table_name"] for row in rows} == built.mirrored_tables
    assert {"dag_run", "task_instance", "task_instance_history"} <= built.mirrored_tables
    for row in rows:
        assert row["is_failing"] is False and row["last_run_status"] == "ok" and row["last_error"] is None
        assert row["seconds_since_success"] >= 0 and row["live_rows"] is not None
    assert built.marts[adapter]["task_state_durations"][1] == [], "no history tables in this mirror"


def test_both_airflow_versions_and_warehouses_give_the_same_marts(built_airflow3: Built,
                                                                 built_airflow2: Built) -> None:
    reference = {mart: columns for mart, (columns, _) in built_airflow3.marts["duckdb"].items()}
    for built in (built_airflow3, built_airflow2):
        for adapter in ADAPTERS:
            assert {mart: columns for mart, (columns, _) in built.marts[adapter].items()} == reference
    assert {r["task_id"] for r in built_airflow2.marts["duckdb"]["task_runs"][1]} == \
        {r["task_id"] for r in built_airflow3.marts["duckdb"]["task_runs"][1]} == \
        {"numbers", "double", "flaky", "broken"}
    assert {r["dag_id"] for r in built_airflow2.marts["postgres"]["dag_runs"][1]} == {PROBE_DAG_ID}
