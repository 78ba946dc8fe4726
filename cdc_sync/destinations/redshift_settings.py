"""Redshift connection settings: an Airflow Redshift connection as a destination URL plus driver options, and the
arguments ``redshift_connector.connect`` takes (TLS on unless turned off explicitly). Apart from the dialect and the
destination, as Snowflake's are in :mod:`cdc_sync.destinations.snowflake_settings`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdc_sync.errors import ConfigError
from cdc_sync.urls import URL

CONNECT_OPTIONS = {
    "iam", "cluster_identifier", "region", "db_user", "access_key_id", "secret_access_key", "session_token",
    "profile", "is_serverless", "serverless_work_group", "serverless_acct_id", "ssl", "sslmode", "timeout",
    "auto_create", "db_groups", "credentials_provider", "role_arn", "password", "user",
}
LOCAL_OPTIONS = {"s3_bucket", "s3_prefix", "iam_role", "lock_lease_seconds"}


def redshift_settings_from_connection(connection: Mapping[str, Any]) -> tuple[URL, dict[str, Any]]:
    """An Airflow Redshift connection (``host``, ``port``, ``login``, ``password``, ``schema`` = database, extras
    ``iam``, ``cluster_identifier``, ``region``, ``profile``, ``db_user``, ``is_serverless``,
    ``serverless_work_group``, …) as a destination URL plus driver options; the password goes to the options."""
    extra = dict(connection.get("extra") or connection.get("extra_dejson") or {})
    url = URL.create("redshift", username=connection.get("login"), host=connection.get("host"),
                     port=connection.get("port") or 5439, database=connection.get("schema") or "dev")
    options = {k: v for k, v in extra.items() if k in CONNECT_OPTIONS | LOCAL_OPTIONS}
    if connection.get("password"):
        options["password"] = connection["password"]
    return url, options


def connect_arguments(url: URL, options: Mapping[str, Any]) -> dict[str, Any]:
    """Driver arguments; TLS is on unless the user turns it off explicitly."""
    unknown = set(options) - CONNECT_OPTIONS - LOCAL_OPTIONS
    if unknown:
        raise ConfigError(f"Unknown Redshift option(s) {', '.join(sorted(unknown))}: use redshift_connector "
                          "arguments, or s3_bucket / iam_role for the COPY path.")
    arguments: dict[str, Any] = {"host": url.host, "port": url.port or 5439, "database": url.database or "dev",
                                 "user": url.username, "ssl": True, "sslmode": "verify-ca"}
    if url.password:
        arguments["password"] = url.password
    for key, value in url.query.items():
        arguments[key] = value if isinstance(value, str) else value[0]
    arguments.update({k: v for k, v in options.items() if k in CONNECT_OPTIONS})
    for flag in ("iam", "ssl", "is_serverless"):
        if isinstance(arguments.get(flag), str):
            arguments[flag] = arguments[flag].lower() in {"1", "true", "yes"}
    return {k: v for k, v in arguments.items() if v is not None}
