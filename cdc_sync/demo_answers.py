"""The demo's last step: answers from the mirror, computed by the dbt package's own SQL (dbt/airflow_mirror).

dbt-core cannot share an environment with Airflow 3.3 (conflicting pins), so the demo looks for a ``dbt``
executable with dbt-duckdb beside it (``CDC_SYNC_DBT``, else ``dbt`` on PATH). Without one it prints how to get
the same answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from rich.console import Console
from rich.table import Table

ANSWERS_SCHEMA = "analytics"
ANSWERS_SQL = f"""
SELECT dag_id, run_date, runs, failures, failure_rate, p95_duration_seconds
FROM {ANSWERS_SCHEMA}.dag_daily ORDER BY dag_id, run_date
"""


def dbt_package_directory() -> Path:
    """Installed wheels carry the package inside cdc_sync; a source checkout keeps it at the top level."""
    packaged = Path(__file__).resolve().parent / "_dbt" / "airflow_mirror"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "dbt" / "airflow_mirror"


def find_dbt() -> str | None:
    named = os.environ.get("CDC_SYNC_DBT")
    if named:
        return named if Path(named).is_file() and os.access(named, os.X_OK) else None
    return shutil.which("dbt")


def write_dbt_project(directory: Path, mirror_path: Path, schema: str) -> Path:
    """A dbt project that installs the package as a local package, with a DuckDB profile on the mirror."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dbt_project.yml").write_text(
        "name: airflow_answers\nversion: '1.0'\nconfig-version: 2\nprofile: airflow_answers\n"
        f"vars:\n  airflow_mirror_schema: {json.dumps(schema)}\n")
    (directory / "packages.yml").write_text(f"packages:\n  - local: {json.dumps(str(dbt_package_directory()))}\n")
    profile = {"airflow_answers": {"target": "mirror", "outputs": {"mirror": {
        "type": "duckdb", "path": str(mirror_path), "schema": ANSWERS_SCHEMA, "threads": 1}}}}
    (directory / "profiles.yml").write_text(json.dumps(profile))
    return directory


def _how_to(console: Console, project: Path) -> None:
    named = os.environ.get("CDC_SYNC_DBT")
    missing = f"CDC_SYNC_DBT names {named}, which is not an executable" if named else "dbt is not on PATH"
    console.print(
        "\nAnswers (failure rate and p95 duration per DAG) come from the dbt package in dbt/airflow_mirror. "
        f"{missing}; install it in a separate environment (dbt-core conflicts with Airflow 3.3):\n"
        "  python3 -m venv .venv-dbt && .venv-dbt/bin/pip install 'dbt-core>=1.10,<1.12' 'dbt-duckdb==1.11.*'\n"
        f"  .venv-dbt/bin/dbt deps --project-dir {project} --profiles-dir {project}\n"
        f"  .venv-dbt/bin/dbt build --project-dir {project} --profiles-dir {project}\n"
        "or run the demo again with CDC_SYNC_DBT=/path/to/dbt.", soft_wrap=True)


def show_answers(console: Console, mirror_path: Path, schema: str, workdir: Path) -> bool:
    """Build the package's marts on the mirror with dbt and print failure rate and p95 duration per DAG.

    Returns whether answers were shown (False when dbt is missing or failed; the reason is printed)."""
    project = write_dbt_project(workdir / "dbt_project", mirror_path, schema)
    dbt = find_dbt()
    if dbt is None:
        _how_to(console, project)
        return False
    console.print(f"\nBuilding the dbt package's marts on the mirror ({dbt} build) …")
    for arguments in (["deps"], ["build", "--select", "+dag_daily"]):
        result = subprocess.run([dbt, *arguments, "--project-dir", str(project), "--profiles-dir", str(project)],
                                cwd=project, capture_output=True, text=True)
        if result.returncode != 0:
            console.print(f"dbt {arguments[0]} failed; its output ends with:\n{result.stdout[-2000:]}")
            return False
    import duckdb

    connection = duckdb.connect(str(mirror_path), read_only=True)
    try:
        rows = connection.execute(ANSWERS_SQL).fetchall()
    finally:
        connection.close()
    table = Table(title="Answers from dbt (analytics.dag_daily)")
    for column in ("dag", "day", "runs", "failures", "failure rate", "p95 duration (s)"):
        table.add_column(column)
    for dag_id, day, runs, failures, rate, p95 in rows:
        table.add_row(dag_id, str(day), str(runs), str(failures), "" if rate is None else f"{rate:.1%}",
                      "" if p95 is None else f"{p95:.1f}")
    console.print(table)
    return True
