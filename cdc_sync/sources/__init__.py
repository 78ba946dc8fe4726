"""Source engines. Drivers are imported only when a source of that engine is opened."""

from __future__ import annotations

from cdc_sync.errors import ConfigError
from cdc_sync.sources.base import CursorFilter, Horizon, RowVersionFilter, SeenRowVersions, Source, SourceSnapshot
from cdc_sync.urls import URL, engine_of

__all__ = ["CursorFilter", "Horizon", "RowVersionFilter", "SeenRowVersions", "Source", "SourceSnapshot",
           "open_source"]


def open_source(url: URL) -> Source:
    engine = engine_of(url, role="source")
    if engine == "postgresql":
        from cdc_sync.sources.postgres import PostgresSource

        return PostgresSource(url)
    if engine == "mysql":
        from cdc_sync.sources.mysql import MySQLSource

        return MySQLSource(url)
    if engine == "sqlite":
        from cdc_sync.sources.sqlite import SQLiteSource

        return SQLiteSource(url)
    raise ConfigError(f"No source reader for engine {engine!r}.")
