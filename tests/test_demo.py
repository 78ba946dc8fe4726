"""The README's first command: the demo builds a real Airflow DB on SQLite, mirrors it into DuckDB, and ends with
answers computed by the dbt package (through the dbt environment of tests/dbt_env.sh), or says how to get them."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import duckdb
from rich.console import Console

from cdc_sync.demo_answers import show_answers
from tests.dbt_runner import DBT_BIN, require_dbt


def test_demo_mirrors_a_real_airflow_sqlite_database_and_answers_with_dbt(tmp_path: Path) -> None:
    require_dbt()
    cli = Path(sys.executable).with_name("cdc-sync")
    env = {**os.environ, "CDC_SYNC_DBT": str(DBT_BIN), "COLUMNS": "200"}
    result = subprocess.run([str(cli), "demo", "--workdir", str(tmp_path)], capture_output=True, text=True,
                            timeout=400, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Second cycle" in output
    assert "Answers from dbt" in output, output[-3000:]
    connection = duckdb.connect(str(tmp_path / "airflow_mirror.duckdb"), read_only=True)
    try:
        runs = connection.execute("SELECT state, count(*) FROM airflow.dag_run GROUP BY state ORDER BY state")
        assert runs.fetchall() == [("failed", 3), ("success", 72)]
        assert connection.execute("SELECT count(*) FROM airflow.task_instance").fetchone() == (300,)
        source = connection.execute("SELECT count(*) FROM airflow._cdc_watermarks WHERE last_error IS NULL")
        assert source.fetchone() == (7,)
        # The answers are the package's: per DAG, one failed run out of the DAG's runs, each run 240 s long.
        daily = connection.execute("SELECT dag_id, sum(runs), sum(failures), max(p95_duration_seconds) "
                                   "FROM analytics.dag_daily GROUP BY dag_id ORDER BY dag_id").fetchall()
        assert daily == [(dag_id, 25, 1, 240.0) for dag_id in ("etl_customers", "etl_orders", "ml_training")]
    finally:
        connection.close()
    assert all(dag_id in output for dag_id in ("etl_customers", "etl_orders", "ml_training"))


def test_without_dbt_the_demo_says_how_to_get_the_answers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CDC_SYNC_DBT", str(tmp_path / "no-dbt-here"))
    output = io.StringIO()
    shown = show_answers(Console(file=output, width=200), tmp_path / "mirror.duckdb", "airflow", tmp_path)
    assert shown is False
    said = output.getvalue()
    assert f"CDC_SYNC_DBT names {tmp_path / 'no-dbt-here'}, which is not an executable" in said
    assert f".venv-dbt/bin/dbt build --project-dir {tmp_path / 'dbt_project'}" in said and "dbt-duckdb" in said
    project = tmp_path / "dbt_project"
    assert "airflow_mirror_schema: \"airflow\"" in (project / "dbt_project.yml").read_text()
    assert "dbt/airflow_mirror" in (project / "packages.yml").read_text()
