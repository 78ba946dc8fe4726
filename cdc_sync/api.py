"""The Python API: the same capabilities as the command line."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from cdc_sync.config import DEFAULT_DESTINATION, SyncConfig, build_config, schema_or_default
from cdc_sync.cycle import run_cycle
from cdc_sync.destinations import dialect_for, open_destination
from cdc_sync.errors import TableSyncError
from cdc_sync.progress import ReadProgress
from cdc_sync.replicate import TableCallback
from cdc_sync.report import CycleReport
from cdc_sync.state import StateStore, Watermark
from cdc_sync.urls import URL, parse_url, scrubbed_errors
from cdc_sync.verification import DEFAULT_CHUNK_ROWS, VerifyReport, verify_mirror


def _config(source: str | URL | None, destination: str | URL | None, schema: str | None,
            options: Mapping[str, Any]) -> SyncConfig:
    return build_config(source=source, destination=destination, schema=schema, **options)


def sync(
    source: str | URL | None = None,
    destination: str | URL | None = None,
    schema: str | None = None,
    *,
    tables: Iterable[str] | None = None,
    additional_tables: Iterable[str] | None = None,
    raise_on_failure: bool = True,
    on_table: TableCallback | None = None,
    progress: ReadProgress | None = None,
    **options: Any,
) -> CycleReport:
    """Run one incremental cycle. ``tables=None`` → defaults, ``tables=[]`` → every table.

    Options: ``deletes`` ("soft" | "hard" | "ignore"), ``table_deletes`` ({table: mode}), ``include_columns``
    and ``hash_columns`` (["table.column"]), ``hash_key`` (default ``CDC_SYNC_HASH_KEY``: hashed columns get
    HMAC-SHA-256 under it, else plain SHA-256, which anyone can recompute for a guessed value), ``lookback_seconds``,
    ``allow_foreign_source``, ``parallel_tables``, ``lock_wait_seconds`` (how long a table that another cycle is
    syncing is waited for; then it is left to that cycle and reported ``locked``, not failed), ``capture`` ("auto" |
    "log" | "query", see :mod:`cdc_sync.capture_choice`; default ``CDC_SYNC_CAPTURE``, else "auto"),
    ``max_retained_wal`` (bytes of WAL the log mode's slot may keep before the cycle drops it and resyncs in the
    watermark mode; default 1 GiB), ``history`` (True: keep every version of each row in ``<table>__history``, see
    :mod:`cdc_sync.history`). ``progress`` receives each table's rows as they are read
    (:class:`cdc_sync.progress.ProgressLines` writes plain lines about every 10 s while a read lasts).
    Raises :class:`TableSyncError` after the cycle if any table failed (the others are committed).
    """
    config = _config(source, destination, schema,
                     {"tables": tables, "additional_tables": additional_tables, **options})
    with _secrets_hidden(config):
        report = run_cycle(config, on_table=on_table, progress=progress)
    _raise_for_failures(report, raise_on_failure)
    return report


def resync(
    source: str | URL | None = None,
    destination: str | URL | None = None,
    schema: str | None = None,
    *,
    tables: Iterable[str] | None = None,
    additional_tables: Iterable[str] | None = None,
    only: Iterable[str] | None = None,
    raise_on_failure: bool = True,
    on_table: TableCallback | None = None,
    progress: ReadProgress | None = None,
    **options: Any,
) -> CycleReport:
    """Re-read the selected tables (or only those in ``only``) in full, atomically per table, and reset their
    watermarks. Rows gone from the source are handled by the delete mode, so soft-deleted history is kept."""
    config = _config(source, destination, schema,
                     {"tables": tables, "additional_tables": additional_tables, **options})
    with _secrets_hidden(config):
        report = run_cycle(config, resync=True, only_tables=only, on_table=on_table, progress=progress)
    _raise_for_failures(report, raise_on_failure)
    return report


def verify(
    source: str | URL | None = None,
    destination: str | URL | None = None,
    schema: str | None = None,
    *,
    tables: Iterable[str] | None = None,
    additional_tables: Iterable[str] | None = None,
    only: Iterable[str] | None = None,
    fix: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    **options: Any,
) -> VerifyReport:
    """Prove the mirror exact: compare the keys and a digest of every copied column of each selected table (or
    only those in ``only``) with the source, chunk by chunk. ``fix`` repairs what differs through the MERGE path
    (missing and differing rows upserted, extra rows handled by the delete mode), in one transaction per table.
    ``report.exact`` is False when a difference was found and not repaired."""
    config = _config(source, destination, schema,
                     {"tables": tables, "additional_tables": additional_tables, **options})
    with _secrets_hidden(config):
        return verify_mirror(config, only=only, fix=fix, chunk_rows=chunk_rows)


def status(destination: str | URL | None = None, schema: str | None = None,
           destination_options: Mapping[str, Any] | None = None) -> list[Watermark]:
    """The watermark table of a mirror: one entry per table (empty if the schema was never synced)."""
    url = parse_url(destination or os.environ.get("CDC_SYNC_DESTINATION_URL") or DEFAULT_DESTINATION,
                    role="destination")
    schema = schema_or_default(schema)
    dialect_for(url).validate_schema_name(schema)
    with scrubbed_errors(url, secrets=(destination_options or {}).values()), \
            open_destination(url, destination_options, must_exist=True) as connection:
        store = StateStore(connection, schema)
        if not store.has_state():
            return []
        return list(store.watermarks().values())


def _secrets_hidden(config: SyncConfig) -> AbstractContextManager[None]:
    """Errors leave the API with no secret of the URLs or driver options in them (see :func:`scrubbed_errors`)."""
    return scrubbed_errors(config.source_url, config.destination_url, secrets=config.destination_options.values())


def _raise_for_failures(report: CycleReport, raise_on_failure: bool) -> None:
    if raise_on_failure and not report.ok:
        failed = report.failed
        raise TableSyncError(
            f"{len(failed)} table(s) failed ({', '.join(failed)}); the others were synced. First error: "
            f"{next(iter(failed.values()))}",
            failed,
        )
