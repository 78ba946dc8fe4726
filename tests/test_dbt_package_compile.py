"""Snowflake and Redshift cannot run here: the package's models and tests are compiled for them by dbt-snowflake
and dbt-redshift (without connecting: ``--no-populate-cache`` and ``airflow_mirror_introspect: false``), and every
compiled statement must parse with sqlglot's dialect of that warehouse. This is all that is verified for them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import sqlglot

from tests.dbt_runner import dbt_command, require_dbt, write_project

TARGETS = {
    "snowflake": {"type": "snowflake", "account": "offline-account", "user": "nobody", "password": "unused",
                  "database": "ANALYTICS", "warehouse": "WH", "schema": "analytics", "threads": 1},
    "redshift": {"type": "redshift", "host": "127.0.0.1", "port": 1, "user": "nobody", "password": "unused",
                 "dbname": "analytics", "schema": "analytics", "threads": 1},
}
# What each warehouse's own macros must have put in the SQL (adapter.dispatch picked them).
DISPATCHED = {
    "snowflake": ("to_json(src.conf)", "datediff(\n        millisecond", 'ANALYTICS."airflow".dag_run'),
    "redshift": ("json_serialize(src.conf)", "percentile_cont(0.95) within group", '"airflow".dag_run'),
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[Path, str]]:
    require_dbt()
    project = write_project(tmp_path_factory.mktemp("dbt-compile") / "project", TARGETS)
    arguments = ("compile", "--no-populate-cache", "--vars", "{airflow_mirror_introspect: false}")
    processes = {target: subprocess.Popen(dbt_command(project, *arguments, target=target), cwd=project,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for target in TARGETS}
    statements = {}
    for target, process in processes.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"dbt compile --target {target} failed:\n{output[-5000:]}"
        folder = project / f"target-{target}" / "compiled" / "airflow_mirror"
        statements[target] = {path.relative_to(folder): path.read_text() for path in folder.rglob("*.sql")}
    return statements


@pytest.mark.parametrize("warehouse", ["snowflake", "redshift"])
def test_every_compiled_statement_parses_in_the_warehouse_dialect(compiled, warehouse: str) -> None:
    statements = compiled[warehouse]
    models = {path.stem for path in statements if path.parent.name in ("staging", "marts")}
    data_tests = [path for path in statements if path.parent.suffix == ".yml"]
    assert {"task_runs", "dag_runs", "dag_daily", "task_failures", "sync_health", "task_state_durations",
            "stg_airflow__dag_run", "stg_airflow__task_fail"} <= models
    assert len(data_tests) >= 20, "the data tests are compiled too"
    for path, sql in statements.items():
        parsed = sqlglot.parse(sql, read=warehouse)
        assert parsed and all(tree is not None for tree in parsed), path
    everything = "\n".join(statements.values())
    for fragment in DISPATCHED[warehouse]:
        assert fragment in everything, f"{fragment!r} missing from the {warehouse} SQL"

