"""What a user asks for, validated before anything connects or writes."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cdc_sync.digests import validate_key
from cdc_sync.errors import ConfigError
from cdc_sync.urls import URL, engine_of, parse_url

DeleteMode = Literal["soft", "hard", "ignore"]
DELETE_MODES: tuple[str, ...] = ("soft", "hard", "ignore")
# How a cycle finds changes (cdc_sync.capture_choice): the source's write-ahead log, watermark queries, or either.
CaptureMode = Literal["auto", "log", "query"]
CAPTURE_MODES: tuple[str, ...] = ("auto", "log", "query")
DEFAULT_MAX_RETAINED_WAL = 1 << 30
DEFAULT_SCHEMA = "airflow"
DEFAULT_DESTINATION = "duckdb:///airflow_mirror.duckdb"
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
# Sizes as PostgreSQL writes them (max_slot_wal_keep_size): a kB is 1024 bytes, an MB 1024 kB.
SIZE_UNITS = {"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40,
              "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


def parse_size(text: str) -> int:
    """Bytes in ``512MB``, ``2GB``, ``1.5GiB`` or ``1073741824``; units as PostgreSQL's (1 MB = 1024 kB)."""
    match = _SIZE.fullmatch(text.strip().lower())
    if match is None or match.group(2) not in SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size: write a number and a unit (kB, MB, GB or TB), e.g. 512MB or 2GB.")
    size = int(float(match.group(1)) * SIZE_UNITS[match.group(2)])
    if size < 1:
        raise ValueError(f"{text!r} is no size at all: give at least one byte, e.g. 512MB.")
    return size


def schema_or_default(schema: str | None) -> str:
    """The schema asked for, else ``CDC_SYNC_SCHEMA``, else ``airflow``; a name given empty is an error, never the
    default in disguise."""
    if schema is None:
        return os.environ.get("CDC_SYNC_SCHEMA") or DEFAULT_SCHEMA
    if not isinstance(schema, str) or not schema.strip():
        raise ConfigError(f"The destination schema {schema!r} is empty: pass --schema NAME, or leave --schema out "
                          f"for the default {DEFAULT_SCHEMA!r}.")
    return schema


def _column_refs(values: Iterable[str] | None, option: str) -> frozenset[tuple[str, str]]:
    """Parse ``table.column`` references, failing early on anything else."""
    refs = set()
    for value in values or ():
        table, dot, column = value.partition(".")
        if not dot or not table or not column:
            raise ConfigError(f"{option} entry {value!r} must be written table.column, e.g. ab_user.email.")
        refs.add((table, column))
    return frozenset(refs)


@dataclass(frozen=True)
class SyncConfig:
    """One sync request. ``tables=None`` means the default tables; ``tables=[]`` means every table."""

    source_url: URL
    destination_url: URL
    schema: str = DEFAULT_SCHEMA
    tables: tuple[str, ...] | None = None
    additional_tables: tuple[str, ...] = ()
    deletes: DeleteMode = "soft"
    table_deletes: Mapping[str, DeleteMode] = field(default_factory=dict)
    include_columns: frozenset[tuple[str, str]] = frozenset()
    hash_columns: frozenset[tuple[str, str]] = frozenset()
    lookback_seconds: float = 5.0
    allow_foreign_source: bool = False
    # Tables synced at once (each on its own source and warehouse connection) once every table is mirrored.
    parallel_tables: int = 2
    # How long a table held by another cycle is waited for (the other tables are synced meanwhile); after that it
    # is left to that cycle, reported "locked". DuckDB: how long to wait for another process's cycle to end.
    lock_wait_seconds: float = 0.0
    # Driver settings that do not fit in a URL (e.g. a private key), merged over what the URL says.
    destination_options: Mapping[str, Any] = field(default_factory=dict)
    # The key of hashed columns' HMAC-SHA-256 digests; None: plain SHA-256 (cdc_sync.digests).
    hash_key: str | None = field(default=None, repr=False)
    capture: CaptureMode = "auto"
    # Log capture: WAL the slot may keep (bytes) before the cycle drops it and resyncs in the watermark mode.
    max_retained_wal: int = DEFAULT_MAX_RETAINED_WAL
    # Keep every version of each row in <table>__history (cdc_sync.history).
    history: bool = False

    @property
    def source_engine(self) -> str:
        return engine_of(self.source_url, role="source")

    @property
    def destination_engine(self) -> str:
        return engine_of(self.destination_url, role="destination")

    def delete_mode(self, table: str) -> DeleteMode:
        return self.table_deletes.get(table, self.deletes)


def build_config(
    *,
    source: str | URL | None = None,
    destination: str | URL | None = None,
    schema: str | None = None,
    tables: Iterable[str] | None = None,
    additional_tables: Iterable[str] | None = None,
    deletes: str = "soft",
    table_deletes: Mapping[str, str] | None = None,
    include_columns: Iterable[str] | None = None,
    hash_columns: Iterable[str] | None = None,
    lookback_seconds: float = 5.0,
    allow_foreign_source: bool = False,
    parallel_tables: int = 2,
    lock_wait_seconds: float = 0.0,
    destination_options: Mapping[str, Any] | None = None,
    hash_key: str | None = None,
    capture: str = "auto",
    max_retained_wal: int = DEFAULT_MAX_RETAINED_WAL,
    history: bool = False,
) -> SyncConfig:
    """Validate a request, filling gaps from ``CDC_SYNC_*`` environment variables."""
    source = source or os.environ.get("CDC_SYNC_SOURCE_URL")
    destination = destination or os.environ.get("CDC_SYNC_DESTINATION_URL") or DEFAULT_DESTINATION
    schema = schema_or_default(schema)
    source_url = parse_url(source, role="source")
    destination_url = parse_url(destination, role="destination")
    engine_of(source_url, role="source")
    engine_of(destination_url, role="destination")
    if isinstance(tables, str) or isinstance(additional_tables, str):
        raise ConfigError("tables and additional_tables must be lists of names, not a single string.")
    table_tuple = None if tables is None else tuple(tables)
    additional = tuple(additional_tables or ())
    for name in (table_tuple or ()) + additional:
        if not isinstance(name, str) or not _TABLE_NAME.match(name):
            raise ConfigError(f"Table name {name!r} is not a valid table name: use the bare name, e.g. dag_run.")
    modes = {"*": deletes, **dict(table_deletes or {})}
    for table, mode in modes.items():
        if mode not in DELETE_MODES:
            raise ConfigError(
                f"deletes={mode!r} for {table} is not a delete mode: use one of {', '.join(DELETE_MODES)}."
            )
    if capture not in CAPTURE_MODES:
        raise ConfigError(f"capture={capture!r} is not a capture mode: use one of {', '.join(CAPTURE_MODES)} (auto: "
                          "the write-ahead log when the source allows it, else watermark queries).")
    if isinstance(max_retained_wal, bool) or not isinstance(max_retained_wal, int) or max_retained_wal < 1:
        raise ConfigError(f"max_retained_wal={max_retained_wal!r} must be a whole number of bytes, at least 1 (default "
                          f"{DEFAULT_MAX_RETAINED_WAL}, 1 GiB).")
    if not isinstance(history, bool):
        raise ConfigError(f"history={history!r} must be True (keep every version in <table>__history) or False.")
    if lookback_seconds < 0:
        raise ConfigError("lookback_seconds must be zero or positive.")
    if isinstance(parallel_tables, bool) or not isinstance(parallel_tables, int) or not 1 <= parallel_tables <= 8:
        raise ConfigError(f"parallel_tables={parallel_tables!r} must be a whole number from 1 to 8 (1: one table at "
                          "a time).")
    if isinstance(lock_wait_seconds, bool) or not isinstance(lock_wait_seconds, int | float) \
            or lock_wait_seconds < 0:
        raise ConfigError(f"lock_wait_seconds={lock_wait_seconds!r} must be zero or a positive number of seconds.")
    return SyncConfig(
        source_url=source_url,
        destination_url=destination_url,
        schema=schema,
        tables=table_tuple,
        additional_tables=additional,
        deletes=deletes,  # type: ignore[arg-type]
        table_deletes=dict(table_deletes or {}),  # type: ignore[arg-type]
        include_columns=_column_refs(include_columns, "include_columns"),
        hash_columns=_column_refs(hash_columns, "hash_columns"),
        lookback_seconds=lookback_seconds,
        allow_foreign_source=allow_foreign_source,
        parallel_tables=parallel_tables,
        lock_wait_seconds=float(lock_wait_seconds),
        destination_options=dict(destination_options or {}),
        capture=capture,  # type: ignore[arg-type]
        max_retained_wal=max_retained_wal,
        history=history,
        hash_key=validate_key(hash_key if hash_key is not None else os.environ.get("CDC_SYNC_HASH_KEY")),
    )
