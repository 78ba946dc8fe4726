"""Every difference between Airflow 2.x and 3.x that the decorator touches, in one place.

Airflow 3 moved the authoring interface to ``airflow.sdk`` (decorator base, hooks, assets, configuration, secret
masking) and renamed datasets to assets; Airflow 2.10/2.11 keep them under ``airflow.decorators.base``,
``airflow.hooks.base``, ``airflow.datasets`` and ``airflow.configuration``. The rest of ``cdc_sync.airflow``
imports these names from here and never asks which Airflow it runs on, except through :data:`AIRFLOW_3`.
"""

from __future__ import annotations

from typing import Any

import airflow

AIRFLOW_VERSION: str = airflow.__version__
AIRFLOW_3: bool = int(AIRFLOW_VERSION.split(".", 1)[0]) >= 3

if AIRFLOW_3:
    from airflow.sdk import Asset as OutletAsset
    from airflow.sdk import BaseHook, BaseOperator
    from airflow.sdk.bases.decorator import DecoratedOperator, determine_kwargs, task_decorator_factory
    from airflow.sdk.configuration import conf
    from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException, AirflowSkipException
    from airflow.sdk.log import mask_secret
else:  # Airflow 2.10 / 2.11
    from airflow.configuration import conf
    from airflow.datasets import Dataset as OutletAsset
    from airflow.decorators.base import DecoratedOperator, task_decorator_factory
    from airflow.exceptions import AirflowFailException, AirflowNotFoundException, AirflowSkipException
    from airflow.hooks.base import BaseHook
    from airflow.models.baseoperator import BaseOperator
    from airflow.utils.log.secrets_masker import mask_secret
    from airflow.utils.operator_helpers import determine_kwargs

__all__ = [
    "AIRFLOW_3",
    "AIRFLOW_VERSION",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSkipException",
    "BaseOperator",
    "DecoratedOperator",
    "OutletAsset",
    "configured_metadata_url",
    "determine_kwargs",
    "get_connection",
    "mask_secret",
    "task_decorator_factory",
    "webserver_base_url",
]


def get_connection(connection_id: str) -> Any:
    """The Airflow Connection ``connection_id`` (from the secrets backends, env vars or the metadata DB)."""
    return BaseHook.get_connection(connection_id)


def configured_metadata_url() -> str | None:
    """Airflow 2 only: the configured ``sql_alchemy_conn``. Airflow 3 tasks must not use it (it is scrubbed to
    ``airflow-db-not-allowed:///`` inside the task runner), so this returns None there."""
    if AIRFLOW_3:
        return None
    return conf.get("database", "sql_alchemy_conn", fallback=None) or None


def webserver_base_url() -> str | None:
    """The public base URL of the UI: ``[webserver] base_url`` on 2.x, ``[api] base_url`` on 3.x."""
    section = "api" if AIRFLOW_3 else "webserver"
    return conf.get(section, "base_url", fallback=None) or None
