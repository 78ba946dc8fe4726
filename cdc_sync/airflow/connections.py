"""Airflow Connections → cdc_sync settings, read the way the official providers read their own connections.

A connection travels as a plain mapping (see :func:`connection_mapping`) so that the warehouse modules can turn it
into settings without importing Airflow::

    {"conn_id": "main", "conn_type": "snowflake", "host": ..., "login": ..., "password": ..., "schema": ...,
     "port": ..., "extra": {...}}          # extra = Connection.extra_dejson

Extras are looked up under the plain key first and then under the legacy form-field key
(``extra__redshift__region``), as the official providers do. Snowflake and Redshift connections are read by their
destination modules (``snowflake_settings_from_connection`` / ``redshift_settings_from_connection``), which own
those drivers' settings.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from cdc_sync.errors import ConfigError
from cdc_sync.urls import URL

ConnectionMapping = Mapping[str, Any]
Settings = tuple[URL, dict[str, Any]]

# db_type as a user writes it → destination engine.
DB_TYPES: dict[str, str] = {
    "snowflake": "snowflake",
    "redshift": "redshift",
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "duckdb": "duckdb",
}
# libpq parameters an Airflow Postgres connection may carry in its extras (others, like "cursor", are the hook's).
_LIBPQ_EXTRAS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name", "options",
                 "target_session_attrs")
_SOURCE_CONN_TYPES = {"postgres": "postgresql", "postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql",
                      "sqlite": "sqlite"}


def connection_mapping(connection: Any) -> dict[str, Any]:
    """The fields of an Airflow ``Connection`` (2.x or 3.x) as a plain mapping."""
    return {
        "conn_id": connection.conn_id,
        "conn_type": connection.conn_type,
        "host": connection.host,
        "login": connection.login,
        "password": connection.password,
        "schema": connection.schema,
        "port": connection.port,
        "extra": dict(connection.extra_dejson or {}),
    }


def engine_for_db_type(db_type: str) -> str:
    """Validate ``db_type`` and return its destination engine."""
    engine = DB_TYPES.get(str(db_type).lower()) if isinstance(db_type, str) else None
    if engine is None:
        raise ConfigError(f"db_type={db_type!r} is not supported: use one of {', '.join(DB_TYPES)}.")
    return engine


# The warehouse connection's extra that holds the key of hashed columns' HMAC digests (cdc_sync.digests).
HASH_KEY_EXTRA = "hash_key"


def extra_field(mapping: ConnectionMapping, name: str) -> Any:
    """An extra by its plain name, else by its legacy ``extra__<conn_type>__<name>`` key; None when empty."""
    extra = mapping.get("extra") or {}
    value = extra.get(name)
    if value in (None, ""):
        value = extra.get(f"extra__{mapping.get('conn_type') or ''}__{name}")
    return None if value in (None, "") else value


def destination_settings(db_type: str, mapping: ConnectionMapping) -> Settings:
    """(URL, driver options) of the warehouse an Airflow connection points at."""
    engine = engine_for_db_type(db_type)
    # cdc_sync's own extra is no driver option (Redshift passes every extra to its driver).
    extra = mapping.get("extra") or {}
    mapping = {**mapping, "extra": {key: value for key, value in extra.items() if not key.endswith(HASH_KEY_EXTRA)}}
    if engine == "postgresql":
        return _postgres_url(mapping, "postgresql"), {}
    if engine == "duckdb":
        return _duckdb_url(mapping), {}
    module = importlib.import_module(f"cdc_sync.destinations.{engine}")
    return getattr(module, f"{engine}_settings_from_connection")(mapping)


def source_url_from_connection(mapping: ConnectionMapping) -> URL:
    """The metadata database URL an Airflow connection (e.g. ``airflow_db``) points at."""
    conn_type = str(mapping.get("conn_type") or "").lower()
    engine = _SOURCE_CONN_TYPES.get(conn_type)
    if engine is None:
        raise ConfigError(
            f"Connection {mapping.get('conn_id')!r} has type {conn_type!r}: the Airflow metadata database must be "
            f"reached through a connection of type {', '.join(sorted(set(_SOURCE_CONN_TYPES)))}."
        )
    if engine == "sqlite":
        return URL.create("sqlite", database=mapping.get("host") or mapping.get("schema"))
    return _postgres_url(mapping, engine)


def _postgres_url(mapping: ConnectionMapping, drivername: str) -> URL:
    query = {} if drivername != "postgresql" else {
        key: str(extra_field(mapping, key)) for key in _LIBPQ_EXTRAS if extra_field(mapping, key) is not None
    }
    return URL.create(
        drivername,
        username=mapping.get("login") or None,
        password=mapping.get("password") or None,
        host=mapping.get("host") or None,
        port=int(mapping["port"]) if mapping.get("port") else None,
        database=mapping.get("schema") or extra_field(mapping, "database"),
        query=query,
    )


def _duckdb_url(mapping: ConnectionMapping) -> URL:
    path = extra_field(mapping, "path") or extra_field(mapping, "database") or mapping.get("host") \
        or mapping.get("schema")
    if not path:
        raise ConfigError(
            f"Connection {mapping.get('conn_id')!r} names no DuckDB file: set its host to the file path, e.g. "
            "AIRFLOW_CONN_MIRROR='{\"conn_type\": \"duckdb\", \"host\": \"/data/mirror.duckdb\"}'."
        )
    return URL.create("duckdb", database=str(path))
