"""``cdc-sync demo``: a real Airflow metadata DB on SQLite, built by Airflow's own migrations, filled with sample
runs, then mirrored into a local DuckDB file — twice, to show an incremental cycle."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cdc_sync import api
from cdc_sync.demo_answers import show_answers
from cdc_sync.errors import ConfigError

DAGS = ("etl_orders", "etl_customers", "ml_training")
TASKS = ("extract", "transform", "load", "notify")


def _airflow_executable() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    found = str(candidate) if candidate.exists() else shutil.which("airflow")
    if not found:
        raise ConfigError(
            "The demo builds a real Airflow schema and needs Airflow installed: pip install 'cdc-sync[airflow]'."
        )
    return found


def build_airflow_db(path: Path) -> None:
    """Run ``airflow db migrate`` against a fresh SQLite file."""
    home = path.parent / "airflow_home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{path}",
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run([_airflow_executable(), "db", "migrate"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise ConfigError(f"airflow db migrate failed: {result.stderr.strip().splitlines()[-1:]}")


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def add_sample_runs(path: Path, runs_per_dag: int, start: datetime, state: str = "success") -> None:
    """Scheduler-like rows: DAGs, tags, runs, task instances and a job per task instance."""
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT OR IGNORE INTO dag_bundle (name, active) VALUES ('dags-folder', 1)")
        for dag_id in DAGS:
            connection.execute(
                "INSERT OR IGNORE INTO dag (dag_id, is_paused, is_stale, bundle_name, timetable_type, "
                "partition_mapper_info, max_active_tasks, max_consecutive_failed_dag_runs, "
                "has_task_concurrency_limits, fileloc, owners) VALUES (?, 0, 0, 'dags-folder', 'cron', '{}', 16, 0, "
                "0, ?, 'data-team')", (dag_id, f"/opt/airflow/dags/{dag_id}.py"))
            connection.execute("INSERT OR IGNORE INTO dag_tag (name, dag_id) VALUES ('demo', ?)", (dag_id,))
            for number in range(runs_per_dag):
                at = start + timedelta(hours=number)
                run_id = f"scheduled__{at.isoformat()}"
                connection.execute(
                    "INSERT INTO dag_run (dag_id, run_id, logical_date, run_after, start_date, end_date, state, "
                    "run_type, clear_number, conf, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'scheduled', 0, ?, ?)",
                    (dag_id, run_id, _time(at), _time(at), _time(at), _time(at + timedelta(minutes=4)), state,
                     '{"source": "demo"}', _time(at + timedelta(minutes=4))))
                for index, task_id in enumerate(TASKS):
                    begin = at + timedelta(minutes=index)
                    connection.execute(
                        "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, start_date, end_date, "
                        "duration, state, try_number, max_tries, hostname, pool, pool_slots, queue, operator, "
                        "span_status, updated_at) VALUES (?, ?, ?, ?, -1, ?, ?, ?, ?, 1, 0, 'worker-1', "
                        "'default_pool', 1, 'default', 'PythonOperator', 'not_started', ?)",
                        (uuid.uuid4().hex, task_id, dag_id, run_id, _time(begin), _time(begin + timedelta(seconds=42)),
                         42.0, state, _time(begin + timedelta(seconds=42))))
                    connection.execute(
                        "INSERT INTO job (dag_id, state, job_type, start_date, end_date, latest_heartbeat, hostname) "
                        "VALUES (?, 'success', 'LocalTaskJob', ?, ?, ?, 'worker-1')",
                        (dag_id, _time(begin), _time(begin + timedelta(seconds=42)), _time(begin)))


def _show(console: Console, title: str, report) -> None:
    table = Table(title=title)
    for column in ("table", "strategy", "read", "written", "deleted"):
        table.add_column(column)
    for item in report.tables:
        table.add_row(item.table, item.strategy, str(item.rows_read), str(max(item.rows_written, 0)),
                      str(item.rows_deleted))
    console.print(table)


def run_demo(workdir: str, console: Console) -> None:
    directory = Path(workdir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    source_path, mirror_path = directory / "airflow.db", directory / "airflow_mirror.duckdb"
    for stale in (source_path, mirror_path):
        stale.unlink(missing_ok=True)
    console.print(f"Building an Airflow metadata DB with `airflow db migrate` in {source_path} …")
    build_airflow_db(source_path)
    start = datetime.now(UTC) - timedelta(days=2)
    add_sample_runs(source_path, runs_per_dag=24, start=start)
    source, destination = f"sqlite:///{source_path}", f"duckdb:///{mirror_path}"
    _show(console, "First cycle: initial sync", api.sync(source, destination, "airflow", additional_tables=["log"]))
    add_sample_runs(source_path, runs_per_dag=1, start=datetime.now(UTC) - timedelta(minutes=30), state="failed")
    _show(console, "Second cycle: one new failed run per DAG",
          api.sync(source, destination, "airflow", additional_tables=["log"]))
    console.print(f"\nThe mirror is {mirror_path} (schema airflow). Its watermarks:\n"
                  f"  cdc-sync status --destination {destination}")
    show_answers(console, mirror_path, "airflow", directory)
