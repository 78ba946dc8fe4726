"""Warehouses. Each is a pure :class:`Dialect` plus a :class:`Destination`; drivers load only when used."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdc_sync.destinations.base import Destination
from cdc_sync.destinations.boundary import TranslatedDestination
from cdc_sync.destinations.dialect import ColumnSpec, Dialect, Statement
from cdc_sync.errors import ConfigError
from cdc_sync.translate import Boundary, edge_secrets
from cdc_sync.urls import URL, engine_of, redact

__all__ = ["ColumnSpec", "Destination", "Dialect", "Statement", "dialect_for", "open_destination"]


def dialect_for(url: URL) -> Dialect:
    """The dialect of a destination URL, without connecting (for early validation)."""
    engine = engine_of(url, role="destination")
    if engine == "duckdb":
        from cdc_sync.destinations.duckdb import DuckDBDialect

        return DuckDBDialect()
    if engine == "postgresql":
        from cdc_sync.destinations.postgres import PostgresDialect

        return PostgresDialect()
    if engine == "snowflake":
        from cdc_sync.destinations.snowflake import SnowflakeDialect

        return SnowflakeDialect()
    if engine == "redshift":
        from cdc_sync.destinations.redshift import RedshiftDialect

        return RedshiftDialect()
    raise ConfigError(f"No destination for engine {engine!r}.")


ENGINE_NAMES = {"duckdb": "DuckDB", "postgresql": "PostgreSQL", "snowflake": "Snowflake", "redshift": "Redshift"}


def open_destination(url: URL, options: Mapping[str, Any] | None = None, *,
                     must_exist: bool = False) -> Destination:
    """Connect to a destination; ``options`` are driver settings that do not fit in a URL (e.g. a private key).

    ``must_exist``: only open a mirror that is there (a DuckDB file is then never created). Every call of the
    returned destination is inside its translation boundary."""
    engine = engine_of(url, role="destination")
    boundary = Boundary("destination", ENGINE_NAMES.get(engine, engine), redact(url), edge_secrets(url, options))
    with boundary.translating("connecting"):
        destination = _connect(url, engine, options, must_exist)
    return TranslatedDestination(destination, boundary)


def _connect(url: URL, engine: str, options: Mapping[str, Any] | None, must_exist: bool) -> Destination:
    if engine == "duckdb":
        from cdc_sync.destinations.duckdb import DuckDBDestination

        return DuckDBDestination(url, options, must_exist=must_exist)
    if engine == "postgresql":
        from cdc_sync.destinations.postgres import PostgresDestination

        return PostgresDestination(url, options)
    if engine == "snowflake":
        from cdc_sync.destinations.snowflake import SnowflakeDestination

        return SnowflakeDestination(url, options)
    if engine == "redshift":
        from cdc_sync.destinations.redshift import RedshiftDestination

        return RedshiftDestination(url, options)
    raise ConfigError(f"No destination for engine {engine!r}.")
