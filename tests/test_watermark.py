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
    position = start_position(RUNS, previous, Horizon(T0, None, True), lookback=5, full=False)
    assert position.where.after == T0 - timedelta(seconds=5)


def test_append_ids_read_while_writers_were_open_are_confirmed_only_after_they_finish() -> None:
    open_writer = Horizon(T0, T0 - timedelta(seconds=1), True)
    position = next_position(LOG, CursorPosition(None, 10, None, None), open_writer, 20)
    assert (position.high_water_mark, position.pending) == (10, 20)
    previous = Watermark("log", "append", "id", "10", pending_high_water_mark="20", pending_read_at=T0,
                         merge_key="id")
    still_open = start_position(LOG, previous, Horizon(T0 + timedelta(1), T0 - timedelta(seconds=1), True), 0, False)
    assert still_open.where.after == 10  # the writer open at the last read may still commit an id below 20
    finished = start_position(LOG, previous, Horizon(T0 + timedelta(1), None, True), 0, False)
    assert finished.where.after == 20 and finished.pending is None


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
