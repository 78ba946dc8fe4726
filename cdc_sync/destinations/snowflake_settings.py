"""Snowflake connection settings: an Airflow connection as a URL plus driver options, key-pair auth, and the
connector's keyword arguments. Secrets travel in the options, never in the URL."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cdc_sync.errors import ConfigError
from cdc_sync.urls import URL

CONNECT_OPTIONS = {
    "account", "user", "password", "database", "warehouse", "role", "authenticator", "token", "host", "port",
    "region", "login_timeout", "network_timeout", "private_key", "private_key_file", "private_key_file_pwd",
    "session_parameters", "client_session_keep_alive", "insecure_mode", "ocsp_fail_open", "protocol",
}
AIRFLOW_EXTRAS = ("account", "warehouse", "database", "role", "region", "authenticator", "host", "token",
                  "insecure_mode", "client_session_keep_alive")


def snowflake_settings_from_connection(connection: Mapping[str, Any]) -> tuple[URL, dict[str, Any]]:
    """An Airflow Snowflake connection (``login``, ``password``, ``schema``, ``extra`` with ``account``,
    ``warehouse``, ``database``, ``role``, ``private_key_file``, ``private_key_content``, ``authenticator``, …)
    as a destination URL plus driver options. Secrets go to the options, never into the URL."""
    extra = dict(connection.get("extra") or connection.get("extra_dejson") or {})
    for key in list(extra):  # Airflow 2 UI stored extras as extra__snowflake__account
        if key.startswith("extra__snowflake__"):
            extra.setdefault(key.removeprefix("extra__snowflake__"), extra.pop(key))
    account = extra.get("account") or connection.get("host")
    if not account:
        raise ConfigError("The Snowflake connection has no account: set extra.account (e.g. xy12345.eu-west-1).")
    database = extra.get("database")
    query = {k: str(extra[k]) for k in ("warehouse", "role") if extra.get(k)}
    url = URL.create("snowflake", username=connection.get("login"), host=str(account), database=database,
                     query=query)
    options: dict[str, Any] = {k: extra[k] for k in AIRFLOW_EXTRAS if extra.get(k) and k not in {"account", "database",
                                                                                                 "warehouse", "role"}}
    if connection.get("password"):
        options["password"] = connection["password"]
    if extra.get("private_key_file"):
        options["private_key_file"] = extra["private_key_file"]
    if extra.get("private_key_content"):
        options["private_key_content"] = extra["private_key_content"]
    if (extra.get("private_key_file") or extra.get("private_key_content")) and connection.get("password"):
        # Airflow holds the key's passphrase in the password field when a key is configured.
        options["private_key_passphrase"] = options.pop("password")
    return url, options


def load_private_key(content: str | bytes, passphrase: str | None) -> bytes:
    """A PEM private key (optionally encrypted) as the DER bytes the connector takes.

    Airflow's Snowflake provider has stored ``private_key_content`` both as PEM text and, in newer releases, as
    base64 of the PEM; both are accepted.
    """
    import base64
    import binascii
    import contextlib

    from cryptography.hazmat.primitives import serialization

    data = content.encode() if isinstance(content, str) else content
    if b"-----BEGIN" not in data:
        with contextlib.suppress(binascii.Error, ValueError):
            data = base64.b64decode(data, validate=False)
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode() if passphrase else None)
    except (ValueError, TypeError) as error:
        raise ConfigError(
            f"The Snowflake private key cannot be read ({type(error).__name__}): check that it is PEM and that the "
            "passphrase is right."
        ) from None
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


KEY_OPTIONS = ("private_key_file", "private_key_content", "private_key_passphrase", "private_key_file_pwd")


def read_key_file(path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as error:
        raise ConfigError(f"The Snowflake private key file {path} cannot be read ({error.strerror}): check "
                          "private_key_file.") from None


def connect_arguments(url: URL, options: Mapping[str, Any]) -> dict[str, Any]:
    """Driver keyword arguments from ``snowflake://user:password@account/database?warehouse=…&role=…`` + options."""
    # A key given in the URL (?private_key_file=…) is read here like one given in the options.
    options = {**{k: v for k, v in url.query.items() if k in KEY_OPTIONS}, **options}
    arguments: dict[str, Any] = {"account": url.host, "user": url.username, "database": url.database,
                                 "autocommit": True}
    if url.password:
        arguments["password"] = url.password
    for key, value in url.query.items():
        if key not in KEY_OPTIONS:
            arguments[key] = value if isinstance(value, str) else value[0]
    passphrase = options.pop("private_key_passphrase", None) or options.pop("private_key_file_pwd", None)
    content = options.pop("private_key_content", None)
    key_file = options.pop("private_key_file", None)
    if content or key_file:
        pem = content if content else read_key_file(key_file)
        arguments["private_key"] = load_private_key(pem, passphrase)
        arguments.setdefault("authenticator", "SNOWFLAKE_JWT")
        arguments.pop("password", None)
    unknown = set(options) - CONNECT_OPTIONS - {"lock_lease_seconds"}
    if unknown:
        raise ConfigError(f"Unknown Snowflake option(s) {', '.join(sorted(unknown))}: use connector arguments.")
    arguments.update({k: v for k, v in options.items() if k in CONNECT_OPTIONS})
    # Instants are read and written in UTC whatever the account's default time zone is.
    arguments["session_parameters"] = {**arguments.get("session_parameters", {}), "TIMEZONE": "UTC"}
    if not arguments.get("account"):
        raise ConfigError("The Snowflake URL has no account: write snowflake://user@ACCOUNT/DATABASE.")
    if not arguments.get("database"):
        raise ConfigError("The Snowflake URL has no database: write snowflake://user@account/DATABASE.")
    return arguments
