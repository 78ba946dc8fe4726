"""Every table the package reads is optional: a mirror that lacks tables builds, and the history-table mart works
when the history table is there. Source freshness alerts when the sync stops."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import duckdb

from tests.dbt_runner import dbt_command, duckdb_target, require_dbt, run_dbt, write_project


def test_a_mirror_with_only_a_history_table_builds_and_gives_state_durations(tmp_path: Path) -> None:
    """Every table the package reads is optional: on a schema holding only a cdc_sync history table
    (task_instance__history), every model builds and passes its tests (empty), and task_state_durations measures
    the time between versions."""
    require_dbt()
    mirror = tmp_path / "mirror.duckdb"
    start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    at = [start + dt.timedelta(seconds=s) for s in (0, 4.5, 65.25, 70)]
    versions = [("insert", "queued", at[0], at[1]), ("update", "running", at[1], at[2]),
                ("update", "success", at[2], at[3]), ("delete", "success", at[3], None)]
    connection = duckdb.connect(str(mirror))
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
    finally:
        connection.close()
    project = write_project(tmp_path / "project", {"duckdb": duckdb_target(mirror)})
    run_dbt(project, "build", target="duckdb")
    connection = duckdb.connect(str(mirror), read_only=True)
    try:
        durations = connection.execute("SELECT state, seconds_in_state, is_current FROM analytics.task_state_durations "
                                       "ORDER BY entered_at").fetchall()
        empty = connection.execute("SELECT (SELECT count(*) FROM analytics.task_runs) "
                                   "+ (SELECT count(*) FROM analytics.dag_daily)").fetchone()
    finally:
        connection.close()
    assert [(state, float(seconds), current) for state, seconds, current in durations] == [
        ("queued", 4.5, False), ("running", 60.75, False), ("success", 4.75, False)]
    assert empty == (0,)


def test_source_freshness_fails_when_the_sync_stops(tmp_path: Path) -> None:
    """``dbt source freshness`` passes on rows synced just now and fails once a table's newest _cdc_synced_at is
    older than its error_after (two hours for job)."""
    require_dbt()
    mirror = tmp_path / "mirror.duckdb"
    connection = duckdb.connect(str(mirror))
    try:
        connection.execute("CREATE SCHEMA airflow")
        for table in ("dag_run", "task_instance", "job"):
            connection.execute(f"CREATE TABLE airflow.{table} (id INTEGER, _cdc_synced_at TIMESTAMPTZ, "
                               "_cdc_deleted_at TIMESTAMPTZ)")
            connection.execute(f"INSERT INTO airflow.{table} VALUES (1, now(), NULL)")
    finally:
        connection.close()
    project = write_project(tmp_path / "project", {"duckdb": duckdb_target(mirror)})
    run_dbt(project, "source", "freshness", target="duckdb")

    connection = duckdb.connect(str(mirror))
    try:
        connection.execute("UPDATE airflow.job SET _cdc_synced_at = now() - INTERVAL 3 HOUR")
    finally:
        connection.close()
    stale = subprocess.run(dbt_command(project, "source", "freshness", target="duckdb"), cwd=project,
                           capture_output=True, text=True, timeout=300)
    assert stale.returncode == 1, stale.stdout[-3000:]
    assert "ERROR STALE freshness of airflow_mirror.job" in stale.stdout
    assert "PASS freshness of airflow_mirror.dag_run" in stale.stdout
