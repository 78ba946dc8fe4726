"""compose.yaml cannot be run here (no Docker engine); check that it parses and offers what the README names."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_file_parses_and_names_the_services_the_readme_uses() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"docker compose up -d ([a-z ]+)", readme)[0].split())
    assert named <= set(services)
    assert services["postgres"]["ports"] == ["5432:5432"] and services["mariadb"]["ports"] == ["3306:3306"]
    airflow = services["airflow"]
    assert "/opt/cdc_sync" in " ".join(airflow["volumes"]) and "pip install" in airflow["command"]
    assert airflow["environment"]["AIRFLOW_CONN_AIRFLOW_DB"].startswith("postgresql://")


def test_ci_script_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "bash .ci/run" in readme
    assert "pytest" in (ROOT / ".ci" / "run").read_text()
