"""Warehouses. Each is a pure :class:`Dialect` plus a :class:`Destination`; drivers load only when used."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdc_sync.destinations.base import Destination
from cdc_sync.destinations.dialect import ColumnSpec, Dialect, Statement
from cdc_sync.errors import ConfigError
from cdc_sync.urls import URL, engine_of

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


def open_destination(url: URL, options: Mapping[str, Any] | None = None) -> Destination:
    """Connect to a destination; ``options`` are driver settings that do not fit in a URL (e.g. a private key)."""
    engine = engine_of(url, role="destination")
    if engine == "duckdb":
        from cdc_sync.destinations.duckdb import DuckDBDestination

        return DuckDBDestination(url, options)
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
