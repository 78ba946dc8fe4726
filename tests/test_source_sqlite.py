"""The SQLite source against a real Airflow 3 schema on SQLite (built by ``airflow db migrate``)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import cdc_sync
from cdc_sync.errors import ConfigError
from cdc_sync.sources import open_source
from cdc_sync.sources.sqlite import SQLiteSource
from cdc_sync.types import LogicalType
from cdc_sync.urls import make_url
from tests.airflow_schema import fill_airflow3_sqlite, sqlite_text_time
from tests.mirror_check import AIRFLOW_KEYS, mirror_query, mirror_rows, normalize

SCHEMA = "airflow"
KEYS = AIRFLOW_KEYS


def path_of(url: str) -> str:
    return make_url(url).database


def sync(source: str, destination: str, **options: Any):
    return cdc_sync.sync(source, destination, schema=SCHEMA, additional_tables=["log"], **options)


def expected_value(declared: str, value: Any) -> Any:
    """What the mirror must hold for a stored SQLite value, decided from the declared type independently."""
    if value is None:
        return None
    if declared == "TIMESTAMP":
        instant = datetime.fromisoformat(value)
        return (instant if instant.tzinfo else instant.replace(tzinfo=UTC)).astimezone(UTC)
    if declared == "BOOLEAN":
        return bool(value)
    return normalize(value)


def assert_mirrored(source: str, destination: str, table: str) -> int:
    key = KEYS[table]
    with sqlite3.connect(path_of(source)) as connection:
        described = connection.execute(f'SELECT name, type FROM pragma_table_info("{table}")').fetchall()
        columns = [name for name, _ in described]
        rows = connection.execute(f'SELECT {", ".join(columns)} FROM "{table}"').fetchall()
    expected = {}
    for row in rows:
        record = {name: expected_value(declared, value) for (name, declared), value in zip(described, row, strict=True)}
        expected[tuple(record[k] for k in key)] = record
    actual = mirror_rows(destination, SCHEMA, table, columns, key)
    assert set(actual) == set(expected), f"{table}: {sorted(set(expected) ^ set(actual))[:3]}"
    for identity, row in expected.items():
        for column, value in row.items():
            mirrored = actual[identity][column]
            assert mirrored == value and type(mirrored) is type(value), (
                f"{table}{identity}.{column}: source {value!r} != mirror {mirrored!r}"
            )
    return len(expected)


def test_introspection_and_url_checks(sqlite_airflow3_source: str) -> None:
    with open_source(make_url(sqlite_airflow3_source)) as source:
        assert isinstance(source.inner, SQLiteSource)  # inside the translation boundary
        tables = source.list_tables()
        assert "task_instance" in tables and not any(name.startswith("sqlite_") for name in tables)
        ti = source.describe("task_instance")
        kinds = {column.name: column.logical_type for column in ti.columns}
        assert kinds["id"] is LogicalType.TEXT  # CHAR(32) UUID
        assert kinds["updated_at"] is LogicalType.TIMESTAMP_TZ
        assert kinds["executor_config"] is LogicalType.BYTES
        assert kinds["next_kwargs"] is LogicalType.JSON
        assert kinds["duration"] is LogicalType.DOUBLE
        assert kinds["map_index"] is LogicalType.INTEGER
        assert ti.primary_key == ("id",) and ("dag_id", "task_id", "run_id", "map_index") in ti.unique_keys
        assert source.describe("dag").column("is_paused").logical_type is LogicalType.BOOLEAN
        assert source.describe("dag_tag").primary_key == ("name", "dag_id")
        assert source.identity() == f"sqlite://{path_of(sqlite_airflow3_source)}"
        with source.snapshot() as snapshot:
            assert snapshot.horizon.sees_open_writes is False and snapshot.horizon.writes_were_open
    with pytest.raises(ConfigError, match="names no database file"):
        SQLiteSource(make_url("sqlite://"))
    with pytest.raises(ConfigError, match="does not exist"):
        SQLiteSource(make_url("sqlite:////nonexistent/airflow.db"))


def test_sync_mirrors_every_row_then_follows_updates_inserts_and_cascaded_deletes(
    sqlite_airflow3_source: str, duckdb_destination: str
) -> None:
    source, destination = sqlite_airflow3_source, duckdb_destination
    first = sync(source, destination)
    assert first.ok, [t.error for t in first.tables]
    assert {t.table: t.strategy for t in first.tables}["task_instance"] == "incremental"
    counts = {table: assert_mirrored(source, destination, table) for table in KEYS}
    assert counts["task_instance"] == 200 and counts["dag_run"] == 50
    # The filler stored every third run's start_date with a +02:00 offset: the mirror holds the UTC instant.
    (start,) = mirror_query(destination, f'SELECT start_date FROM "{SCHEMA}".dag_run WHERE run_id = %s',
                            ("scheduled__3",))[0]
    assert start == datetime(2026, 1, 1, 0, 3, tzinfo=UTC)

    now = datetime.now(UTC).replace(tzinfo=None)
    with sqlite3.connect(path_of(source)) as connection:
        connection.execute("PRAGMA foreign_keys = ON")  # as Airflow's SQLite engine sets it
        connection.execute(
            "UPDATE task_instance SET state = 'failed', try_number = try_number + 1, hostname = 'wörker-2 ✓', "
            "next_kwargs = '{\"retry\": [1, 2]}', executor_config = x'00ff10', end_date = ?, updated_at = ? "
            "WHERE run_id IN ('scheduled__1', 'scheduled__2')", (sqlite_text_time(now), sqlite_text_time(now)))
        # A stamp written with an offset (same instant) must still be found by the cursor.
        connection.execute("UPDATE task_instance SET state = 'queued', updated_at = ? WHERE run_id = 'scheduled__4'",
                           (sqlite_text_time(now + timedelta(seconds=1), offset_minutes=-300),))
        connection.execute("UPDATE dag SET is_paused = NOT is_paused WHERE dag_id = 'dag_2'")
        connection.execute("DELETE FROM dag_run WHERE run_id = 'scheduled__5'")
        connection.execute("INSERT INTO log (dttm, event, extra) VALUES (?, 'cli_task_run', NULL)",
                            (sqlite_text_time(now),))
    fill_airflow3_sqlite(path_of(source), runs=5, first_run=1001)

    second = sync(source, destination)
    assert second.ok, [t.error for t in second.tables]
    # SQLite commits ids in the order they are taken, so the log's mark advanced: only the new row is read.
    assert {t.table: t for t in second.tables}["log"].rows_read == 1
    ti_report = {t.table: t for t in second.tables}["task_instance"]
    assert 3 * 4 + 5 * 4 <= ti_report.rows_read < 200
    counts = {table: assert_mirrored(source, destination, table) for table in KEYS}
    assert counts["task_instance"] == 200 - 4 + 20 and counts["dag_run"] == 50 - 1 + 5 and counts["log"] == 31
    deleted = mirror_query(destination, f'SELECT "_cdc_deleted_at" FROM "{SCHEMA}".task_instance WHERE run_id = %s',
                           ("scheduled__5",))
    assert len(deleted) == 4 and all(row[0] is not None for row in deleted)
    states = mirror_query(destination, f'SELECT DISTINCT state FROM "{SCHEMA}".task_instance WHERE run_id = %s',
                          ("scheduled__4",))
    assert states == [("queued",)]
