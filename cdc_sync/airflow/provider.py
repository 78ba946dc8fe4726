"""The ``apache_airflow_provider`` entry point: tells Airflow which task decorators this package adds."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any


def _version() -> str:
    try:
        return version("cdc-sync")
    except PackageNotFoundError:
        return "0.0.0"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "cdc-sync",
        "name": "cdc_sync",
        "description": "Mirror the Airflow metadata database into a warehouse by change-data capture.",
        "versions": [_version()],
        "task-decorators": [
            {"name": "datacoves_airflow_db_sync", "class-name": "cdc_sync.airflow.decorator.airflow_db_sync_task"},
            {"name": "airflow_db_sync", "class-name": "cdc_sync.airflow.decorator.airflow_db_sync_task"},
        ],
    }
