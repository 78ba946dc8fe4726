"""``cdc-sync run | resync | verify | status | demo``, and ``capture`` (:mod:`cdc_sync.cli_capture`)."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from cdc_sync import api
from cdc_sync.config import parse_size
from cdc_sync.errors import CdcSyncError, ConfigError
from cdc_sync.freshness import FreshnessReport, check_freshness, parse_duration
from cdc_sync.progress import ProgressLines
from cdc_sync.report import LOCKED, CycleReport, TableReport
from cdc_sync.state import Watermark
from cdc_sync.verification import VerifyReport

# `cdc-sync verify` found a difference it did not repair (1: a failure, 2: bad input).
NOT_EXACT_EXIT_CODE = 3
# `cdc-sync status --max-lag` found a table stale or failed, or no table synced at all.
STALE_EXIT_CODE = 4

if TYPE_CHECKING:
    from rich.console import Console


@functools.cache
def _stderr() -> Console:
    """Rich is imported on first use: a scheduled ``run --json`` never draws, and is spared its import time."""
    from rich.console import Console

    return Console(stderr=True)


def _stdout_table(title: str, columns: tuple[str, ...], right_aligned: frozenset[str] = frozenset()) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column in right_aligned else "left")
    return table


def _print_stdout(renderable: Any) -> None:
    from rich.console import Console

    Console().print(renderable)


def _split(values: tuple[str, ...]) -> list[str]:
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _common(function: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--source", envvar="CDC_SYNC_SOURCE_URL", help="Airflow metadata DB URL (SQLAlchemy form)."),
        click.option("--destination", envvar="CDC_SYNC_DESTINATION_URL",
                     help="duckdb:///file.duckdb (default), postgresql://…, snowflake://…, redshift://…"),
        click.option("--schema", envvar="CDC_SYNC_SCHEMA", help="Destination schema (default: airflow)."),
        click.option("--tables", multiple=True, help="Comma-separated tables replacing the defaults."),
        click.option("--additional-tables", multiple=True, help="Comma-separated tables added to the defaults."),
        click.option("--all-tables", is_flag=True, help="Mirror every table of the Airflow database."),
        click.option("--deletes", type=click.Choice(["soft", "hard", "ignore"]), default="soft", show_default=True,
                     help="What a row deleted in the source becomes in the mirror."),
        click.option("--include-column", multiple=True, help="table.column: copy a secret column anyway."),
        click.option("--hash-column", multiple=True,
                     help="table.column: copy a hex digest instead of the value. With CDC_SYNC_HASH_KEY set it is "
                          "HMAC-SHA-256, which no one can recompute without the key; without, plain SHA-256, which "
                          "anyone can recompute for a guessed value (an email, a name). Either keeps equal values "
                          "equal, for joins and counts."),
        click.option("--lookback", type=float, default=5.0, show_default=True,
                     help="Seconds by which timestamp reads overlap the previous cycle (clock skew)."),
        click.option("--allow-foreign-source", is_flag=True,
                     help="Accept a schema that mirrored another source database."),
        click.option("--parallel-tables", type=click.IntRange(1, 8), default=2, show_default=True,
                     help="Tables synced at once, each on its own connections, once every table is mirrored."),
        click.option("--capture", type=click.Choice(["auto", "log", "query"]), default="auto", show_default=True,
                     help="How changes are found: the source's write-ahead log (PostgreSQL, opt-in), watermark "
                          "queries, or auto (says which it chose and why)."),
        click.option("--history", is_flag=True,
                     help="Keep every version of each row in <table>__history: each committed version in log "
                          "capture, the versions each cycle saw in query capture."),
        click.option("--max-retained-wal", default="1GB", show_default=True,
                     help="Log capture: WAL the replication slot may keep, e.g. 512MB or 2GB (1 MB = 1024 kB, as in "
                          "PostgreSQL). Past half, cycles warn; past it, the slot is dropped and the "
                          "tables resynced in the watermark mode, so the slot cannot fill the source's disk."),
        click.option("--lock-wait", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     help="Seconds to wait for a table another cycle is syncing (the others go on meanwhile); "
                          "then it is left to that cycle. On DuckDB: for the process writing the file."),
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout."),
        click.option("-v", "--verbose", is_flag=True, help="Log each step."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _request(source, destination, schema, tables, additional_tables, all_tables, deletes, include_column,
             hash_column, lookback, allow_foreign_source, parallel_tables, capture, history,
             max_retained_wal,
             lock_wait) -> dict[str, Any]:
    if all_tables and tables:
        raise ConfigError("--all-tables and --tables exclude each other: use one.")
    return {
        "source": source,
        "destination": destination,
        "schema": schema,
        "tables": [] if all_tables else (_split(tables) or None),
        "additional_tables": _split(additional_tables),
        "deletes": deletes,
        "include_columns": list(include_column),
        "hash_columns": list(hash_column),
        "lookback_seconds": lookback,
        "allow_foreign_source": allow_foreign_source,
        "parallel_tables": parallel_tables,
        "capture": capture,
        "history": history,
        "max_retained_wal": _size("--max-retained-wal", max_retained_wal),
        "lock_wait_seconds": lock_wait,
        "raise_on_failure": False,
    }


def _size(option: str, text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as error:
        raise ConfigError(f"{option} {error}") from None


def _print_report(report: CycleReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.summary(), indent=2, default=str))
        return
    table = _stdout_table(f"cdc-sync cycle into schema {report.schema!r}",
                          ("table", "strategy", "status", "read", "written", "deleted", "seconds"),
                          frozenset({"read", "written", "deleted", "seconds"}))
    for item in report.tables:
        status = {"ok": "ok", LOCKED: f"[yellow]{LOCKED}"}.get(item.status, f"[red]{item.status}")
        table.add_row(item.table, item.strategy, status, str(item.rows_read), str(max(item.rows_written, 0)),
                      str(item.rows_deleted), f"{item.seconds:.2f}")
    _print_stdout(table)
    # One line each, however long: a scheduler's log and grep read them line by line.
    for warning in report.warnings + [f"{t.table}: {w}" for t in report.tables for w in t.warnings]:
        _stderr().print(f"[yellow]warning:[/] {_plain(warning)}", soft_wrap=True)
    for name, error in report.failed.items():
        _stderr().print(f"[red]error:[/] {name}: {_plain(error)}", soft_wrap=True)


def _run(action: Callable[..., CycleReport], request: dict[str, Any], as_json: bool, **extra: Any) -> None:
    if as_json or not sys.stderr.isatty():
        # No one watches bars in a scheduler's log: a plain line per long read, about every 10 s.
        report = action(**request, progress=ProgressLines(lambda line: click.echo(line, err=True)), **extra)
    else:
        from cdc_sync.progress_bars import ProgressBars

        with ProgressBars(_stderr()) as bars:
            def synced(item: TableReport) -> None:
                bars.status(f"synced {item.table} ({item.rows_read} rows read)")

            report = action(**request, on_table=synced, progress=bars, **extra)
    _print_report(report, as_json)
    if not report.ok:
        sys.exit(1)


def _plain(text: object) -> str:
    """Text shown as it is: a bracket in a path or a server's message is not Rich markup."""
    from rich.markup import escape

    return escape(str(text))


def _fail(error: CdcSyncError) -> None:
    _stderr().print(f"[red]error:[/] {_plain(error)}", soft_wrap=True)
    sys.exit(2 if isinstance(error, ConfigError) else 1)


@click.group()
def main() -> None:
    """Mirror an Apache Airflow metadata database into a warehouse by change-data capture."""


def console_entry() -> None:
    """The ``cdc-sync`` executable: click's command line, then an exit that skips the interpreter's teardown.

    By the time a command returns, its connections are closed (the DuckDB file checkpointed) and only output
    remains to flush. Unloading psycopg's bundled libpq and OpenSSL, DuckDB and Arrow at interpreter exit costs
    about 0.15 s more, a sixth of a scheduled no-change cycle, so the process ends right after the flush.
    """
    try:
        main.main(prog_name="cdc-sync")
        code: int | str | None = 0
    except SystemExit as exit_request:
        code = exit_request.code
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


@main.command()
@_common
def run(as_json: bool, verbose: bool, **options: Any) -> None:
    """One incremental cycle over the selected tables."""
    _logging(verbose)
    try:
        _run(api.sync, _request(**options), as_json)
    except CdcSyncError as error:
        _fail(error)


@main.command()
@_common
@click.option("--table", "only", multiple=True, help="Resync only this table (repeatable).")
def resync(as_json: bool, verbose: bool, only: tuple[str, ...], **options: Any) -> None:
    """Re-read tables in full, atomically per table, resetting their watermarks."""
    _logging(verbose)
    try:
        _run(api.resync, _request(**options), as_json, only=_split(only) or None)
    except CdcSyncError as error:
        _fail(error)


@main.command()
@_common
@click.option("--table", "only", multiple=True, help="Verify only this table (repeatable).")
@click.option("--fix", is_flag=True, help="Repair what differs through the MERGE path, one transaction per table.")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Rows per compared chunk: bounds memory on large tables.")
def verify(as_json: bool, verbose: bool, only: tuple[str, ...], fix: bool, chunk_rows: int, **options: Any) -> None:
    """Prove the mirror exact: keys and row digests compared chunk by chunk. Exit code 3 when it is not."""
    _logging(verbose)
    request = _request(**options)
    for unused in ("raise_on_failure", "parallel_tables", "lookback_seconds", "allow_foreign_source",
                   "lock_wait_seconds"):
        request.pop(unused)
    try:
        report = api.verify(**request, only=_split(only) or None, fix=fix, chunk_rows=chunk_rows)
    except CdcSyncError as error:
        _fail(error)
        return
    _print_verification(report, as_json)
    if not report.exact:
        sys.exit(NOT_EXACT_EXIT_CODE)


def _print_verification(report: VerifyReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.summary(), indent=2, default=str))
        return
    table = _stdout_table(f"cdc-sync verify of schema {report.schema!r}",
                          ("table", "source rows", "mirror rows", "chunks", "missing", "extra", "differing",
                           "result"), frozenset({"source rows", "mirror rows", "chunks", "missing", "extra",
                                                 "differing"}))
    for item in report.tables:
        result = item.skipped or ("exact" if item.exact else "repaired" if item.repaired else "[red]not exact")
        table.add_row(item.table, str(item.source_rows), str(item.mirror_rows), str(item.chunks), str(item.missing),
                      str(item.extra), str(item.differing), result)
    _print_stdout(table)
    for item in report.tables:
        for kind, sample in (("missing", item.sample_missing), ("extra", item.sample_extra),
                             ("differing", item.sample_differing)):
            if sample:
                _stderr().print(f"{item.table}: {kind} keys (sample): {', '.join(map(str, sample))}", soft_wrap=True)


class Duration(click.ParamType):
    """A duration such as ``30m``, ``90s``, ``1h30m`` or ``2d``, as seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


@main.command()
@click.option("--destination", envvar="CDC_SYNC_DESTINATION_URL")
@click.option("--schema", envvar="CDC_SYNC_SCHEMA")
@click.option("--max-lag", type=Duration(), default=None,
              help=f"Alert (exit code {STALE_EXIT_CODE}) when a table's mirror is further behind its source than "
                   "this (30m, 90s, 1h30m, 2d), or its last attempt failed.")
@click.option("--table", "only", multiple=True,
              help="With --max-lag: check only this table (repeatable, or comma-separated); one never synced is stale.")
@click.option("--json", "as_json", is_flag=True)
def status(destination: str | None, schema: str | None, max_lag: float | None, only: tuple[str, ...],
           as_json: bool) -> None:
    """The watermark table: last success, lag, rows and errors per table. With --max-lag, a freshness check."""
    if only and max_lag is None:
        _fail(ConfigError("--table narrows the freshness check: give --max-lag too (e.g. --max-lag 30m)."))
    try:
        marks = api.status(destination, schema)
    except CdcSyncError as error:
        _fail(error)
        return
    freshness = None if max_lag is None else check_freshness(marks, max_lag, tables=_split(only) or None)
    if freshness is not None and only:
        marks = [item.watermark for item in freshness.tables]
    _print_status(marks, freshness, as_json)
    if freshness is not None and not freshness.ok:
        sys.exit(STALE_EXIT_CODE)


def _print_status(marks: list[Watermark], freshness: FreshnessReport | None, as_json: bool) -> None:
    if as_json:
        summary = [vars(mark) for mark in marks] if freshness is None else freshness.summary()
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    if not marks:
        _stderr().print(("[red]alert:[/] " if freshness else "") + "No cycle has run into this schema yet.")
        return
    columns = ("table", "strategy", "cursor", "high-water mark", "last success", "lag s", "live rows", "error")
    table = _stdout_table("cdc-sync status", columns + (("verdict",) if freshness else ()))
    verdicts = {item.watermark.table_name: item.verdict for item in freshness.tables} if freshness else {}
    for mark in marks:
        verdict = verdicts.get(mark.table_name)
        table.add_row(mark.table_name, mark.strategy, mark.cursor_column or "", mark.high_water_mark or "",
                      str(mark.last_success_at or ""), f"{mark.lag_seconds or 0:.1f}", str(mark.live_rows or 0),
                      (mark.last_error or "")[:80],
                      *(() if verdict is None else (verdict if verdict == "fresh" else f"[red]{verdict}",)))
    _print_stdout(table)
    if freshness is not None and not freshness.ok:
        for verdict, meaning in (("stale", f"behind their source by more than {freshness.max_lag_seconds:g} s"),
                                 ("failed", "failed in their last attempt")):
            if names := freshness.named(verdict):
                _stderr().print(f"[red]alert:[/] {', '.join(names)}: {meaning}", soft_wrap=True)


@main.command()
@click.option("--workdir", default=".cdc_sync_demo", show_default=True, help="Where the demo files go.")
def demo(workdir: str) -> None:
    """Build a real Airflow metadata DB (SQLite) with sample runs and mirror it into a local DuckDB file."""
    from cdc_sync.demo import run_demo

    _logging(False)
    try:
        run_demo(workdir, _stderr())
    except CdcSyncError as error:
        _fail(error)


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not verbose:
        logging.getLogger("cdc_sync").setLevel(logging.ERROR)


# Last: the capture commands use the helpers above.
from cdc_sync.cli_capture import capture  # noqa: E402

main.add_command(capture)
