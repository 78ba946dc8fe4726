"""``cdc-sync capture setup | status | drop``: the source's replication slot and publication for log capture."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click

from cdc_sync import log_admin
from cdc_sync.cli import _common, _fail, _logging, _print_stdout, _request, _stderr, _stdout_table
from cdc_sync.config import SyncConfig, build_config
from cdc_sync.errors import CdcSyncError
from cdc_sync.sources.pgoutput import format_lsn
from cdc_sync.sources.postgres_log import LogStatus
from cdc_sync.sources.publication import LogNames

MIB = 1024 * 1024


def _names(function: Callable[..., Any]) -> Callable[..., Any]:
    function = click.option("--publication", help="Publication name (default: derived from --schema).")(function)
    return click.option("--slot", help="Replication slot name (default: derived from --schema).")(function)


@click.group()
def capture() -> None:
    """The source's replication slot and publication for log capture (PostgreSQL)."""


def _admin_command(function: Callable[[SyncConfig, LogNames, bool], None]) -> click.Command:
    """A ``capture`` subcommand: the sync's table and column options (the publication follows them), the name
    overrides, and an expected failure as one line with the README's exit code."""
    @functools.wraps(function)
    def command(as_json: bool, verbose: bool, slot: str | None, publication: str | None, **options: Any) -> None:
        _logging(verbose)
        try:
            request = _request(**options)
            for unused in ("raise_on_failure", "parallel_tables", "lookback_seconds", "allow_foreign_source"):
                request.pop(unused)
            config = build_config(**request)
            function(config, log_admin.log_names(config, slot, publication), as_json)
        except CdcSyncError as error:
            _fail(error)

    return capture.command()(_common(_names(command)))


@_admin_command
def setup(config: SyncConfig, names: LogNames, as_json: bool) -> None:
    """Create the publication (only the synced tables, no secret column) and the slot. Run once, by a role with
    REPLICATION (rds_replication on RDS) that owns Airflow's tables."""
    result = log_admin.setup(config, names)
    if as_json:
        click.echo(json.dumps({"done": result.done, "warnings": result.warnings}, indent=2))
        return
    for warning in result.warnings:
        _stderr().print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    for line in result.done or [f"publication {names.publication} and slot {names.slot} are already in place"]:
        click.echo(line)


@_admin_command
def status(config: SyncConfig, names: LogNames, as_json: bool) -> None:
    """The slot's state and the WAL it retains, and what the publication lists."""
    found = log_admin.status(config, names)
    if as_json:
        click.echo(json.dumps(_status_summary(found), indent=2))
        return
    table = _stdout_table(f"cdc-sync capture status of schema {config.schema!r}", ("", ""))
    for key, value in _status_summary(found).items():
        if key != "tables":
            table.add_row(key, str(value))
    for published in found.tables:
        table.add_row(f"table {published.name}", ", ".join(published.columns))
    _print_stdout(table)


@_admin_command
def drop(config: SyncConfig, names: LogNames, as_json: bool) -> None:
    """Drop the slot and the publication (only those cdc_sync made), so the source keeps no WAL for them."""
    done = log_admin.drop(config, names)
    if as_json:
        click.echo(json.dumps({"done": done}, indent=2))
        return
    for line in done or [f"neither slot {names.slot} nor publication {names.publication} exists"]:
        click.echo(line)


def _status_summary(found: LogStatus) -> dict[str, Any]:
    def lsn(value: int | None) -> str | None:
        return None if value is None else format_lsn(value)

    retained = found.retained_wal_bytes
    return {
        "slot": found.names.slot,
        "slot exists": found.slot_exists,
        "slot made by cdc_sync": found.slot_owned,
        "publication": found.names.publication,
        "publication exists": found.publication_exists,
        "publication made by cdc_sync": found.publication_owned,
        "active": found.active,
        "retained WAL (MiB)": None if retained is None else round(retained / MIB, 1),
        "WAL status": found.wal_status,
        "restart LSN": lsn(found.restart_lsn),
        "confirmed LSN": lsn(found.confirmed_flush_lsn),
        "tables": {table.name: list(table.columns) for table in found.tables},
    }
