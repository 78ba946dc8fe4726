"""Running a DAG under real Airflow 3 task isolation without a deployment (DESIGN.md §5): an api-server in the
background, then ``airflow dags test --use-executor`` with the LocalExecutor. Used by the tests and the benchmark."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg

AIRFLOW3_BIN = Path(sys.executable).with_name("airflow")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _dags_test_until_run_ends(command: list[str], env: dict[str, str], home: Path, metadata_url: str,
                              timeout: float, dag_id: str, grace: float = 30) -> tuple[int | None, str]:
    """Run ``airflow dags test`` until the DAG's run has ended; returns its exit code and output.

    Airflow 3's ``dags test --use-executor`` at times keeps running after its run has succeeded (seen once in
    several runs, with its LocalExecutor workers left as zombies). Once the run's state is final and the command
    has had ``grace`` seconds to exit, it is stopped, and the exit code is None: the assertions that follow
    check what the run did, not how the command ended."""
    output_path = home / "dags-test.out"
    with output_path.open("w") as output_file:
        process = subprocess.Popen(command, env=env, stdout=output_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        deadline = time.monotonic() + timeout
        ended_at: float | None = None
        try:
            while process.poll() is None:
                now = time.monotonic()
                if now > deadline:
                    raise TimeoutError(f"{' '.join(command[1:])} did not finish within {timeout}s")
                if ended_at is None and _run_state(metadata_url, dag_id) in ("success", "failed"):
                    ended_at = now
                if ended_at is not None and now - ended_at > grace:
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=1)  # back at once when the command exits, else a look a second
        finally:
            if process.poll() is None:
                os.killpg(process.pid, 9)
                process.wait(timeout=10)
                returncode = None
            else:
                returncode = process.returncode
    return returncode, output_path.read_text(errors="replace")


def _run_state(metadata_url: str, dag_id: str) -> str | None:
    with psycopg.connect(metadata_url) as metadata:
        row = metadata.execute("SELECT state FROM dag_run WHERE dag_id = %s", (dag_id,)).fetchone()
    return None if row is None else row[0]


def _wait_http(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def run_under_task_isolation(env: dict[str, str], home: Path, dag_id: str, extra: dict[str, str],
                             timeout: float = 300) -> tuple[int | None, str]:
    """``airflow dags test --use-executor`` with an api-server beside it (LocalExecutor, DESIGN.md §5): the task
    runs supervised, with the ORM blocked. Returns the command's exit code (None: stopped after its run ended)
    and output."""
    port = _free_port()
    env = {
        **env,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        **extra,
    }
    server_log = (home / "api-server.log").open("w")
    server = subprocess.Popen([str(AIRFLOW3_BIN), "api-server", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/v2/monitor/health", server, timeout=180)
        return _dags_test_until_run_ends(
            [str(AIRFLOW3_BIN), "dags", "test", "--use-executor", dag_id], env, home,
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("+psycopg", ""), timeout=timeout, dag_id=dag_id,
        )
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait(timeout=5)
        server_log.close()
