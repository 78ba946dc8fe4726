"""Where a task reads from and writes to: Airflow connections (and, on Airflow 2, the configured metadata DB)
resolved at run time into cdc_sync URLs, with every secret registered with Airflow's log masker first."""

from __future__ import annotations

import logging
from typing import Any

from cdc_sync.airflow.compat import (
    AIRFLOW_3,
    AirflowNotFoundException,
    configured_metadata_url,
    get_connection,
    mask_secret,
)
from cdc_sync.airflow.connections import (
    HASH_KEY_EXTRA,
    connection_mapping,
    destination_settings,
    extra_field,
    source_url_from_connection,
)
from cdc_sync.errors import ConfigError
from cdc_sync.urls import URL, parse_url, redact

log = logging.getLogger(__name__)

DEFAULT_SOURCE_CONNECTION_ID = "airflow_db"
# Airflow 3 replaces sql_alchemy_conn inside tasks with this URL.
_SCRUBBED_PREFIX = "airflow-db-not-allowed"


def _masked_mapping(connection_id: str) -> dict[str, Any]:
    mapping = connection_mapping(get_connection(connection_id))
    if mapping["password"]:
        mask_secret(mapping["password"])
    if mapping["extra"]:
        mask_secret(mapping["extra"])  # masks values of sensitive keys (private_key_content, token, …)
    return mapping


def destination(db_type: str, connection_id: str) -> tuple[URL, dict[str, Any]]:
    """(URL, driver options) of the warehouse connection ``connection_id``."""
    try:
        mapping = _masked_mapping(connection_id)
    except AirflowNotFoundException:
        raise ConfigError(
            f"The Airflow connection {connection_id!r} (connection_id) does not exist: create it for your "
            f"{db_type} warehouse in Admin → Connections or with an AIRFLOW_CONN_{connection_id.upper()} "
            "environment variable."
        ) from None
    url, options = destination_settings(db_type, mapping)
    mask_secret(options)  # values under sensitive keys (password, private_key_*, passphrase, token, …)
    return url, options


def hash_key(connection_id: str) -> str | None:
    """The key of hashed columns' HMAC digests, from the warehouse connection's extra ``hash_key``, if set."""
    try:
        key = extra_field(_masked_mapping(connection_id), HASH_KEY_EXTRA)
    except AirflowNotFoundException:
        return None
    if key:
        mask_secret(key)
    return key


def source(source_url: str | None, source_connection_id: str) -> URL:
    """The metadata database: ``source_url`` if given, else the connection ``source_connection_id``, else (on
    Airflow 2 only) the configured ``sql_alchemy_conn``."""
    if source_url:
        url = parse_url(source_url, role="source")
        if url.password:
            mask_secret(url.password)
        return url
    try:
        return source_url_from_connection(_masked_mapping(source_connection_id))
    except AirflowNotFoundException:
        pass
    configured = configured_metadata_url()
    if configured and not configured.startswith(_SCRUBBED_PREFIX):
        url = parse_url(configured, role="source")
        if url.password:
            mask_secret(url.password)
        log.info("No connection %r: reading the configured metadata database %s", source_connection_id,
                 redact(url))
        return url
    why = "Airflow 3 tasks cannot use Airflow's own database settings" if AIRFLOW_3 else \
        "no metadata database is configured"
    raise ConfigError(
        f"The Airflow connection {source_connection_id!r} (source_connection_id) does not exist and {why}: create "
        f"it pointing at the Airflow metadata database, e.g. AIRFLOW_CONN_{source_connection_id.upper()}="
        "'postgresql://airflow_reader:PASSWORD@metadata-db:5432/airflow' or `airflow connections add "
        f"{source_connection_id} --conn-uri postgresql://airflow_reader:PASSWORD@metadata-db:5432/airflow`; "
        "or pass source_url=."
    )
