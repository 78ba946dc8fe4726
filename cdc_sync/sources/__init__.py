"""Source engines. Drivers are imported only when a source of that engine is opened."""

from __future__ import annotations

from cdc_sync.errors import ConfigError
from cdc_sync.sources.base import CursorFilter, Horizon, RowVersionFilter, SeenRowVersions, Source, SourceSnapshot
from cdc_sync.sources.boundary import TranslatedLog, TranslatedSource
from cdc_sync.sources.publication import LogNames
from cdc_sync.translate import Boundary, edge_secrets
from cdc_sync.urls import URL, engine_of, redact

__all__ = ["CursorFilter", "Horizon", "RowVersionFilter", "SeenRowVersions", "Source", "SourceSnapshot",
           "open_log", "open_source"]


ENGINE_NAMES = {"postgresql": "PostgreSQL", "mysql": "MySQL/MariaDB", "sqlite": "SQLite"}


def open_source(url: URL) -> Source:
    """Connect to a source; every call of the returned source is inside its translation boundary."""
    engine = engine_of(url, role="source")
    boundary = Boundary("source", ENGINE_NAMES.get(engine, engine), redact(url), edge_secrets(url))
    with boundary.translating("connecting"):
        source = _connect(url, engine)
    return TranslatedSource(source, boundary)


def open_log(url: URL, names: LogNames) -> TranslatedLog:
    """The log side of a PostgreSQL source (its slot and publication), on a connection of its own, every call inside
    the source's translation boundary."""
    engine = engine_of(url, role="source")
    if engine != "postgresql":
        raise ConfigError(
            f"Log capture reads PostgreSQL's write-ahead log, and this source is {ENGINE_NAMES.get(engine, engine)}: "
            "use the query capture mode."
        )
    boundary = Boundary("source", ENGINE_NAMES[engine], redact(url), edge_secrets(url))
    with boundary.translating("connecting for log capture"):
        from cdc_sync.sources.postgres_log import PostgresLog

        log = PostgresLog(url, names)
    return TranslatedLog(log, boundary)


def _connect(url: URL, engine: str) -> Source:
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
