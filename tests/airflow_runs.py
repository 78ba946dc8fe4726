"""Real DAG runs for tests: Airflow's own ``dags test``, ``db clean`` and ``tasks clear`` against a metadata
database.

The DAG (tests/dags_analytics/analytics_probe.py) retries a task that then succeeds, fails a task on every try and
maps a task whose third instance fails once. Airflow 2.11 runs it from its own environment (tests/airflow2_env.sh).
Commands that follow each other with nothing in between run in one process (tests/airflow_cli_batch.py): the
start-up of the ``airflow`` executable is paid once, not once a command.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.airflow_cli_batch import MARKER

DAGS_FOLDER = Path(__file__).parent / "dags_analytics"
BATCH = Path(__file__).with_name("airflow_cli_batch.py")
PROBE_DAG_ID = "analytics_probe"


def _airflow(airflow_bin: str, sql_alchemy_conn: str, *commands: tuple[str, ...]) -> None:
    """Run ``commands`` (each an ``airflow`` command line) in order, in one process of the Airflow of
    ``airflow_bin``; raises if one did not end as it should."""
    home = tempfile.mkdtemp(prefix="airflow-home-")
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")},
        "AIRFLOW_HOME": home,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    python = str(Path(airflow_bin).with_name("python"))
    try:
        result = subprocess.run([python, "-P", str(BATCH), *(json.dumps(command) for command in commands)], env=env,
                                capture_output=True, text=True, timeout=300 * len(commands))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    ends = re.compile(rf"{re.escape(MARKER)} (\d+) exit=(-?\d+)\n")
    codes = {int(index): int(code) for index, code in ends.findall(result.stdout)}
    outputs = [out + err for out, err in zip(ends.split(result.stdout)[::3], ends.split(result.stderr)[::3],
                                            strict=False)]
    for index, command in enumerate(commands):
        output = outputs[index] if index in codes else ""
        # The probe's runs fail by design (its `broken` task), so `dags test` exits 1 once its run has ended.
        ended = "DagRun Finished" in output if command[:2] == ("dags", "test") else codes.get(index) == 0
        if not ended:
            raise RuntimeError(f"airflow {' '.join(command)} failed (process exit {result.returncode}):\n"
                               f"{(output or result.stdout + result.stderr)[-5000:]}")


def run_probe_dag(sql_alchemy_conn: str, logical_dates: tuple[str, ...], airflow_bin: str | None = None) -> None:
    """One real run of the probe DAG per logical date (``airflow dags test``)."""
    airflow_bin = airflow_bin or str(Path(sys.executable).with_name("airflow"))
    _airflow(airflow_bin, sql_alchemy_conn,
             *(("dags", "test", PROBE_DAG_ID, logical_date) for logical_date in logical_dates))


def clean_and_clear_task(sql_alchemy_conn: str, clean_before: str, task_regex: str, logical_date: str,
                         airflow_bin: str | None = None) -> None:
    """``airflow db clean`` of everything before ``clean_before``, then ``airflow tasks clear`` of one task in the
    run of one logical date (the run goes back to queued)."""
    airflow_bin = airflow_bin or str(Path(sys.executable).with_name("airflow"))
    _airflow(airflow_bin, sql_alchemy_conn,
             ("db", "clean", "--clean-before-timestamp", clean_before, "--yes", "--skip-archive"),
             ("tasks", "clear", PROBE_DAG_ID, "--yes", "--task-regex", task_regex, "--start-date", logical_date,
              "--end-date", logical_date))
