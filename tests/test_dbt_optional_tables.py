"""Every table and column the package reads is optional, the history-table mart works when a history table is
there, and source freshness alerts when the sync stops. One small DuckDB mirror, one dbt project."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import duckdb

from tests.dbt_runner import dbt_command, duckdb_target, require_dbt, run_dbt, write_project

FRESHNESS_TABLES = ("dag_run", "task_instance", "job")


def _make_mirror(path: Path) -> None:
    """A cdc_sync history table (task_instance__history) with four versions of one task instance, and the three
    tables with freshness checks holding only cdc_sync's own columns. Every other table is missing."""
    start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    at = [start + dt.timedelta(seconds=s) for s in (0, 4.5, 65.25, 70)]
    versions = [("insert", "queued", at[0], at[1]), ("update", "running", at[1], at[2]),
                ("update", "success", at[2], at[3]), ("delete", "success", at[3], None)]
    connection = duckdb.connect(str(path))
    try:
        connection.execute("CREATE SCHEMA airflow")
        connection.execute(
            "CREATE TABLE airflow.task_instance__history (dag_id VARCHAR, task_id VARCHAR, run_id VARCHAR, "
            "map_index INTEGER, try_number INTEGER, state VARCHAR, _cdc_op VARCHAR, _cdc_lsn VARCHAR, "
            "_cdc_commit_ts TIMESTAMPTZ, _cdc_valid_from TIMESTAMPTZ, _cdc_valid_to TIMESTAMPTZ, "
            "_cdc_synced_at TIMESTAMPTZ, _cdc_deleted_at TIMESTAMPTZ)")
        connection.executemany(
            "INSERT INTO airflow.task_instance__history VALUES ('d', 't', 'r', -1, 1, ?, ?, '0/1', ?, ?, ?, ?, NULL)",
            [(state, op, valid_from, valid_from, valid_to, valid_from) for op, state, valid_from, valid_to in versions])
        for table in FRESHNESS_TABLES:
            connection.execute(f"CREATE TABLE airflow.{table} (_cdc_synced_at TIMESTAMPTZ, "
                               "_cdc_deleted_at TIMESTAMPTZ)")
    finally:
        connection.close()


def _execute(path: Path, *statements: str) -> list[tuple]:
    connection = duckdb.connect(str(path))
    try:
        return [row for statement in statements for row in connection.execute(statement).fetchall()]
    finally:
        connection.close()


def test_a_mirror_missing_tables_and_columns_builds_and_freshness_alerts(tmp_path: Path) -> None:
    require_dbt()
    mirror = tmp_path / "mirror.duckdb"
    _make_mirror(mirror)
    project = write_project(tmp_path / "project", {"duckdb": duckdb_target(mirror)})
    run_dbt(project, "build", target="duckdb")

    durations = _execute(mirror, "SELECT state, seconds_in_state, is_current FROM analytics.task_state_durations "
                                 "ORDER BY entered_at")
    assert [(state, float(seconds), current) for state, seconds, current in durations] == [
        ("queued", 4.5, False), ("running", 60.75, False), ("success", 4.75, False)], "the deleted version is left out"
    assert _execute(mirror, "SELECT (SELECT count(*) FROM analytics.task_runs) "
                            "+ (SELECT count(*) FROM analytics.dag_daily)") == [(0,)]

    _execute(mirror, *(f"INSERT INTO airflow.{table} VALUES (now(), NULL)" for table in FRESHNESS_TABLES))
    run_dbt(project, "source", "freshness", target="duckdb")
    _execute(mirror, "UPDATE airflow.job SET _cdc_synced_at = now() - INTERVAL 3 HOUR")
    stale = subprocess.run(dbt_command(project, "source", "freshness", target="duckdb"), cwd=project,
                           capture_output=True, text=True, timeout=300)
    assert stale.returncode == 1, stale.stdout[-3000:]
    assert "ERROR STALE freshness of airflow_mirror.job" in stale.stdout
    assert "PASS freshness of airflow_mirror.dag_run" in stale.stdout
