"""Real DAG runs for tests: Airflow's own ``dags test`` and ``tasks clear`` against a metadata database.

The DAG (tests/dags_analytics/analytics_probe.py) retries a task that then succeeds, fails a task on every try and
maps a task whose third instance fails once. Airflow 2.11 runs it from its own environment (tests/airflow2_env.sh).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DAGS_FOLDER = Path(__file__).parent / "dags_analytics"
PROBE_DAG_ID = "analytics_probe"


def _airflow(airflow_bin: str, sql_alchemy_conn: str, *arguments: str) -> None:
    home = tempfile.mkdtemp(prefix="airflow-home-")
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")},
        "AIRFLOW_HOME": home,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    try:
        result = subprocess.run([airflow_bin, *arguments], env=env, capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    # The probe's runs fail by design (its `broken` task), so `dags test` exits 1 once its run has ended.
    output = result.stdout + result.stderr
    ended = "DagRun Finished" in output if arguments[:2] == ("dags", "test") else result.returncode == 0
    if not ended:
        raise RuntimeError(f"airflow {' '.join(arguments)} failed:\n{output[-5000:]}")


def run_probe_dag(sql_alchemy_conn: str, logical_dates: tuple[str, ...], airflow_bin: str | None = None) -> None:
    """One real run of the probe DAG per logical date (``airflow dags test``)."""
    airflow_bin = airflow_bin or str(Path(sys.executable).with_name("airflow"))
    for logical_date in logical_dates:
        _airflow(airflow_bin, sql_alchemy_conn, "dags", "test", PROBE_DAG_ID, logical_date)


def clear_task(sql_alchemy_conn: str, task_regex: str, logical_date: str, airflow_bin: str | None = None) -> None:
    """``airflow tasks clear`` of one task in the run of one logical date: the run goes back to queued."""
    airflow_bin = airflow_bin or str(Path(sys.executable).with_name("airflow"))
    _airflow(airflow_bin, sql_alchemy_conn, "tasks", "clear", PROBE_DAG_ID, "--yes", "--task-regex", task_regex,
             "--start-date", logical_date, "--end-date", logical_date)
