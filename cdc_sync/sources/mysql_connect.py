"""How a MySQL or MariaDB source is connected to: pymysql's arguments from the URL Airflow's connection gives,
TLS included. Kept apart from :mod:`cdc_sync.sources.mysql`, which holds the source's SQL."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from cdc_sync.errors import ConfigError
from cdc_sync.urls import URL, integer_option, source_schema

TRUE, FALSE = {"true", "1", "yes", "required"}, {"false", "0", "no"}


def connect_args(url: URL) -> dict[str, Any]:
    """pymysql arguments from an SQLAlchemy URL as Airflow writes it (mysql://, mysql+mysqldb://, mariadb://…)."""
    params: dict[str, Any] = {
        "host": url.host or "localhost",
        "port": url.port or 3306,
        "user": url.username,
        "password": url.password or "",
        # MySQL's schemas are its databases: ?schema= names the one to read instead of the URL's.
        "database": source_schema(url) or url.database,
        "charset": "utf8mb4",
        "unix_socket": url.query.get("unix_socket"),
        "connect_timeout": integer_option(url, "connect_timeout", role="source"),
        "ssl": tls_context(url.query),
    }
    return {key: value for key, value in params.items() if value is not None}


def _flag(query: Mapping[str, str], key: str, default: bool) -> bool:
    value = query.get(key)
    if value is None:
        return default
    if value.lower() not in TRUE | FALSE:
        raise ConfigError(f"?{key}={value!r} in the source URL must be true or false.")
    return value.lower() in TRUE


def tls_context(query: Mapping[str, str]) -> ssl.SSLContext | None:
    """TLS as the URL asks (``ssl=true`` or any ``ssl_ca``/``ssl_cert``/``ssl_key``): the server's certificate and
    host name are verified, against ``ssl_ca`` or the system's CAs. Verification is turned off only when asked:
    ``ssl_check_hostname=false`` (SQLAlchemy's name) skips the host name, ``ssl_verify_cert=false`` the
    certificate too. pymysql alone would verify nothing without ``ssl_ca``."""
    files = {key: query[key] for key in ("ssl_ca", "ssl_cert", "ssl_key") if query.get(key)}
    verify_cert = _flag(query, "ssl_verify_cert", default=True)
    check_hostname = verify_cert and _flag(query, "ssl_check_hostname", default=True)
    if not _flag(query, "ssl", default=bool(files)):
        return None
    context = ssl.create_default_context(cafile=files.get("ssl_ca"))
    context.check_hostname = check_hostname
    context.verify_mode = ssl.CERT_REQUIRED if verify_cert else ssl.CERT_NONE
    if "ssl_cert" in files:
        context.load_cert_chain(files["ssl_cert"], files.get("ssl_key"))
    return context
