"""dbt for tests: its own virtual environment (tests/dbt_env.sh), a generated project that installs the package
as a local package (as a user's project would), and profiles for DuckDB and PostgreSQL mirrors."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "dbt" / "airflow_mirror"
DBT_BIN = REPO / ".venv-dbt" / "bin" / "dbt"
MARTS = ("task_runs", "dag_runs", "dag_daily", "task_failures", "sync_health", "task_state_durations")
ANALYTICS_SCHEMA = "analytics"


def write_project(directory: Path, targets: dict[str, dict]) -> Path:
    """A user's dbt project that uses the package (packages.yml, ``local:``), with a profile per target, the
    package installed by ``dbt deps``."""
    _write_files(directory, targets)
    installed = _installed_packages(directory.parent)
    for name in INSTALLED:
        source = installed / name
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(source, directory / name, symlinks=True)
        else:
            shutil.copy2(source, directory / name, follow_symlinks=False)
    return directory


def _write_files(directory: Path, targets: dict[str, dict]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dbt_project.yml").write_text(
        "name: mirror_answers\nversion: '1.0'\nconfig-version: 2\nprofile: mirror_answers\n")
    (directory / "packages.yml").write_text(f"packages:\n  - local: {PACKAGE}\n")
    profile = {"mirror_answers": {"target": next(iter(targets)), "outputs": targets}}
    (directory / "profiles.yml").write_text(json.dumps(profile))  # JSON is YAML


INSTALLED = ("dbt_packages", "package-lock.yml")
_deps_lock = threading.Lock()
_deps_done: list[Path] = []


def _installed_packages(near: Path) -> Path:
    """A project with the same packages.yml on which ``dbt deps`` ran, once per test process: what it installs (a
    local package's link and the lock file) is the same for every project, so each new project gets a copy of it
    instead of a ``dbt deps`` process of its own (about 2 s of CPU)."""
    with _deps_lock:
        if not _deps_done:
            project = Path(tempfile.mkdtemp(prefix="dbt-deps-", dir=near))
            _write_files(project, {"duckdb": duckdb_target(project / "unused.duckdb")})
            run_dbt(project, "deps")
            _deps_done.append(project)
        return _deps_done[0]


def duckdb_target(path: Path) -> dict:
    return {"type": "duckdb", "path": str(path), "schema": ANALYTICS_SCHEMA, "threads": 2}


def postgres_target(database: str) -> dict:
    return {"type": "postgres", "host": "127.0.0.1", "port": 5432, "user": "postgres", "password": "",
            "dbname": database, "schema": ANALYTICS_SCHEMA, "threads": 2}


def dbt_command(project: Path, *arguments: str, target: str | None = None) -> list[str]:
    where = ["--target", target, "--target-path", f"target-{target}", "--log-path", f"logs-{target}"] if target else []
    return [str(DBT_BIN), *arguments, "--project-dir", str(project), "--profiles-dir", str(project), *where]


def run_dbt(project: Path, *arguments: str, target: str | None = None) -> str:
    result = subprocess.run(dbt_command(project, *arguments, target=target), capture_output=True, text=True,
                            timeout=600, cwd=project)
    if result.returncode != 0:
        raise AssertionError(f"dbt {' '.join(arguments)} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def build_in_parallel(project: Path, targets: list[str], *arguments: str) -> None:
    """``dbt build`` for several targets at once (each has its own target and log folders)."""
    processes = {target: subprocess.Popen(dbt_command(project, "build", *arguments, target=target), cwd=project,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for target in targets}
    failures = []
    for target, process in processes.items():
        output, _ = process.communicate(timeout=600)
        if process.returncode != 0:
            failures.append(f"dbt build --target {target} failed:\n{output[-6000:]}")
    assert not failures, "\n".join(failures)


def require_dbt() -> None:
    """The dbt environment is built by tests/dbt_env.sh (and .ci/run); without it these tests cannot run."""
    if not DBT_BIN.exists():
        import pytest

        pytest.fail(f"no dbt environment at {DBT_BIN.parent.parent}: create it with bash tests/dbt_env.sh")
