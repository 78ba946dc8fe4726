"""How far a watermark may advance: never past a writer that was still open (DESIGN §2)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pytest

from cdc_sync import migrations, state
from cdc_sync.config import build_config
from cdc_sync.destinations.duckdb import DuckDBDestination
from cdc_sync.errors import StateError
from cdc_sync.plan import plan_table
from cdc_sync.positions import CursorPosition, next_position, start_position
from cdc_sync.sources import Horizon
from cdc_sync.state import Watermark
from cdc_sync.types import Column, LogicalType, TableSchema
from cdc_sync.urls import make_url

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = build_config(source="postgresql://h/a", destination="duckdb:///x.duckdb")
RUN_COLUMNS = (Column("dag_id", LogicalType.TEXT, False), Column("run_id", LogicalType.TEXT, False),
               Column("updated_at", LogicalType.TIMESTAMP_TZ))
RUNS = plan_table(TableSchema("dag_run", RUN_COLUMNS, ("dag_id", "run_id")), CONFIG)
LOG = plan_table(TableSchema("log", (Column("id", LogicalType.INTEGER, False),), ("id",)), CONFIG)
EMPTY = CursorPosition(None, None, None, None)


def test_timestamp_mark_stops_at_the_oldest_open_writer() -> None:
    horizon = Horizon(read_started_at=T0 + timedelta(minutes=10), oldest_open_write_at=T0 + timedelta(minutes=3),
                      sees_open_writes=True)
    assert next_position(RUNS, EMPTY, horizon, T0 + timedelta(minutes=9)).high_water_mark == T0 + timedelta(minutes=3)


def test_timestamp_mark_is_the_max_seen_when_no_writer_is_open() -> None:
    horizon = Horizon(T0 + timedelta(minutes=10), None, True)
    assert next_position(RUNS, EMPTY, horizon, T0 + timedelta(minutes=9)).high_water_mark == T0 + timedelta(minutes=9)


def test_timestamp_reads_overlap_by_the_lookback() -> None:
    previous = Watermark("dag_run", "incremental", "updated_at", T0.isoformat(), merge_key="dag_id,run_id")
    position = start_position(RUNS, previous, lookback=5, full=False)
    assert position.where.after == T0 - timedelta(seconds=5)


def test_append_ids_read_while_writers_were_open_are_confirmed_only_after_they_finish() -> None:
    """A writer holding id 9 is open while id 20 commits and is read: the mark stays at the last confirmed id
    (8), and the next read, after that writer has finished, still starts there, so id 9 is read once committed."""
    open_writer = Horizon(T0, T0 - timedelta(seconds=1), True)
    position = next_position(LOG, CursorPosition(None, 8, None, None), open_writer, 20)
    assert (position.high_water_mark, position.pending, position.pending_read_at) == (8, 20, T0)
    previous = Watermark("log", "append", "id", "8", pending_high_water_mark="20", pending_read_at=T0,
                         merge_key="id")
    next_read = start_position(LOG, previous, 0, False)
    assert next_read.where.after == 8  # never past an id a then-open writer may commit later
    later = T0 + timedelta(minutes=5)
    still_open = next_position(LOG, next_read, Horizon(later, T0 - timedelta(seconds=1), True), 21)
    assert (still_open.high_water_mark, still_open.pending) == (8, 21)
    # Writers open now began after the last read: they can only hold ids above 20, which this read re-reads.
    newer_writer = next_position(LOG, next_read, Horizon(later, T0 + timedelta(seconds=1), True), 21)
    assert (newer_writer.high_water_mark, newer_writer.pending) == (20, 21)
    finished = next_position(LOG, next_read, Horizon(later, None, True), 21)
    assert (finished.high_water_mark, finished.pending) == (20, 21)  # 21 is confirmed by the read after


def test_writers_are_compared_with_the_moment_the_snapshot_was_taken_not_the_reads_start() -> None:
    """A writer that began after the read transaction started but before its snapshot was taken may hold an id
    below the largest the read saw: it must keep the pending mark from being confirmed."""
    read = Horizon(T0, None, True, snapshot_taken_by=T0 + timedelta(milliseconds=2))
    position = next_position(LOG, CursorPosition(None, 8, None, None), read, 20)
    assert position.pending_read_at == T0 + timedelta(milliseconds=2)
    writer_in_between = Horizon(T0 + timedelta(minutes=5), T0 + timedelta(milliseconds=1), True)
    assert next_position(LOG, position, writer_in_between, 20).high_water_mark == 8


def test_an_id_read_with_no_writer_open_is_confirmed_by_the_next_read() -> None:
    """A transaction takes its id before it shows as a writer (nextval comes before its first row), so even a read
    that saw no open writer leaves its ids pending; the next read, with that writer gone, confirms them."""
    quiet = Horizon(T0, None, True)
    position = next_position(LOG, CursorPosition(None, 8, None, None), quiet, 20)
    assert (position.high_water_mark, position.pending) == (8, 20)
    confirmed = next_position(LOG, position, Horizon(T0 + timedelta(minutes=5), None, True), None)
    assert (confirmed.high_water_mark, confirmed.pending) == (20, 20)


def test_append_mark_never_advances_when_open_writers_cannot_be_seen() -> None:
    blind = Horizon(T0, None, sees_open_writes=False)
    position = next_position(LOG, CursorPosition(None, 8, 20, T0 - timedelta(hours=1)), blind, 30)
    assert (position.high_water_mark, position.pending) == (8, 30)


def test_state_written_by_this_version_is_refused_by_an_older_one(tmp_path, monkeypatch) -> None:
    """Watermarks now hold whole snapshots: a cdc_sync that knows only the earlier migrations stops with an
    "upgrade" error instead of failing to parse them."""
    destination = DuckDBDestination(make_url(f"duckdb:///{tmp_path / 'mirror.duckdb'}"))
    try:
        state.StateStore(destination, "airflow").migrate()
        older = tmp_path / "older"
        older.mkdir()
        for path in sorted(migrations.migrations_directory().glob("*.toml"))[:-1]:
            shutil.copy(path, older)
        monkeypatch.setattr(state, "load_migrations", lambda: migrations.load_migrations(older))
        with pytest.raises(StateError, match="newer cdc_sync"):
            state.StateStore(destination, "airflow").migrate()
    finally:
        destination.close()


def test_append_pending_mark_is_confirmed_by_a_read_that_returns_no_row() -> None:
    """A row-version read returns only rows new to the last read, so it may return nothing while an earlier read's
    ids still wait for their writers: once those writers have finished, the pending mark is confirmed anyway."""
    position = CursorPosition(None, 8, 20, T0)
    finished = next_position(LOG, position, Horizon(T0 + timedelta(minutes=5), T0 + timedelta(seconds=1), True), None)
    assert (finished.high_water_mark, finished.pending) == (20, 20)
    quiet = next_position(LOG, position, Horizon(T0 + timedelta(minutes=5), None, True), None)
    assert (quiet.high_water_mark, quiet.pending) == (20, 20)


def test_append_mark_advances_at_once_where_ids_commit_in_order() -> None:
    """SQLite has one writer at a time: a transaction's ids commit before another can take one, so the mark
    advances to the largest id read although the engine cannot see other connections' transactions."""
    sqlite_horizon = Horizon(T0, None, sees_open_writes=False, ids_commit_in_order=True)
    position = next_position(LOG, CursorPosition(None, 8, None, None), sqlite_horizon, 30)
    assert (position.high_water_mark, position.pending) == (30, None)


def test_a_first_read_with_no_writer_open_confirms_at_once() -> None:
    """A first read reads the whole table: leaving its ids pending would make the next read whole again."""
    first = next_position(LOG, CursorPosition(None, None, None, None), Horizon(T0, None, True), 30)
    assert (first.high_water_mark, first.pending) == (30, None)
    busy = next_position(LOG, CursorPosition(None, None, None, None), Horizon(T0, T0, True), 30)
    assert (busy.high_water_mark, busy.pending) == (None, 30)


def test_a_writer_that_ended_between_the_snapshot_and_the_writers_read_keeps_the_pending_mark() -> None:
    """PostgreSQL takes the read's snapshot when the horizon statement starts and reads pg_stat_activity while it
    runs: a writer that commits in between is in neither, so such a read confirms nothing (seen on the real server:
    the busy-writers scenario lost one `log` row in about one run of ten before)."""
    previous = Watermark("log", "append", "id", "8", pending_high_water_mark="20", pending_read_at=T0,
                         merge_key="id")
    next_read = start_position(LOG, previous, 0, False)
    later = T0 + timedelta(minutes=5)
    assert next_position(LOG, next_read, Horizon(later, None, True), 21).high_water_mark == 20
    missed = next_position(LOG, next_read, Horizon(later, None, True, writer_missed=True), 21)
    assert (missed.high_water_mark, missed.pending) == (8, 21)
    first = next_position(LOG, CursorPosition(None, None, None, None), Horizon(T0, None, True, writer_missed=True), 20)
    assert (first.high_water_mark, first.pending) == (None, 20)
