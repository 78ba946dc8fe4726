"""The README's first command: the demo builds a real Airflow DB on SQLite and mirrors it into DuckDB."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb


def test_demo_mirrors_a_real_airflow_sqlite_database(tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("cdc-sync")
    result = subprocess.run([str(cli), "demo", "--workdir", str(tmp_path)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Second cycle" in result.stdout + result.stderr
    connection = duckdb.connect(str(tmp_path / "airflow_mirror.duckdb"), read_only=True)
    try:
        runs = connection.execute("SELECT state, count(*) FROM airflow.dag_run GROUP BY state ORDER BY state")
        assert runs.fetchall() == [("failed", 3), ("success", 72)]
        assert connection.execute("SELECT count(*) FROM airflow.task_instance").fetchone() == (300,)
        source = connection.execute("SELECT count(*) FROM airflow._cdc_watermarks WHERE last_error IS NULL")
        assert source.fetchone() == (7,)
    finally:
        connection.close()
