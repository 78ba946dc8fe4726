"""Tables of an already mirrored schema synced side by side: same mirror, same atomicity, one table at a time for
first loads, and a failure in one lane neither stops the others nor closes connections under them."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

import cdc_sync
from cdc_sync import lanes as table_lanes
from cdc_sync.errors import SourceError
from cdc_sync.lanes import run_in_lanes
from tests.mirror_check import AIRFLOW_KEYS, assert_mirrored, mirror_query

SCHEMA = "airflow"


def test_items_go_to_free_lanes_and_results_keep_the_items_order() -> None:
    ran_on: dict[int, str] = {}

    def lane(item: int) -> int:
        time.sleep(0.2 if item == 0 else 0.01)  # the long item keeps one lane busy
        ran_on[item] = threading.current_thread().name
        return item * 10

    assert run_in_lanes([0, 1, 2, 3, 4], [lane, lane]) == [0, 10, 20, 30, 40]
    assert len(set(ran_on.values())) == 2
    # While one lane holds the long item, the other takes every short one.
    assert {ran_on[i] for i in (1, 2, 3, 4)} == set(ran_on.values()) - {ran_on[0]}


def test_an_escaping_error_stops_new_items_and_is_raised_after_every_lane_finished() -> None:
    finished: list[int] = []

    def lane(item: int) -> int:
        if item == 1:
            raise RuntimeError("lane broke")
        time.sleep(0.1)
        finished.append(item)
        return item

    with pytest.raises(RuntimeError, match="lane broke"):
        run_in_lanes(list(range(20)), [lane, lane])
    assert 0 in finished  # the item in the other lane ran to its end before the error surfaced
    assert len(finished) < 19  # and no lane went on taking items
    assert [t for t in threading.enumerate() if t.name.startswith("cdc_sync-lane")] == []


def _touch_every_table(source: str) -> None:
    with psycopg.connect(source, autocommit=True) as connection:
        connection.execute("UPDATE task_instance SET state = 'failed', updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__1'")
        connection.execute("UPDATE dag_run SET state = 'failed', updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__2'")
        connection.execute("UPDATE dag SET is_paused = NOT is_paused WHERE dag_id = 'dag_2'")
        connection.execute("DELETE FROM task_instance WHERE run_id = 'scheduled__3'")
        connection.execute("UPDATE job SET state = 'failed'")


def test_a_mirrored_schema_syncs_its_tables_on_two_connections(airflow3_source: str, destination: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    first = cdc_sync.sync(airflow3_source, destination, SCHEMA, parallel_tables=2)
    assert first.ok
    lanes_used: list[int] = []
    real = table_lanes.run_in_lanes

    def spy(items, lanes):
        lanes_used.append(len(lanes))
        return real(items, lanes)

    monkeypatch.setattr(table_lanes, "run_in_lanes", spy)
    _touch_every_table(airflow3_source)
    second = cdc_sync.sync(airflow3_source, destination, SCHEMA, parallel_tables=2)
    assert second.ok and lanes_used == [2]
    assert [t.table for t in second.tables] == [t.table for t in first.tables]  # the report keeps plan order
    for table, key in AIRFLOW_KEYS.items():
        if table in {t.table for t in second.tables}:
            assert_mirrored(airflow3_source, destination, SCHEMA, table, key)
    deleted = mirror_query(destination, "SELECT count(*) FROM airflow.task_instance "
                                        "WHERE run_id = 'scheduled__3' AND _cdc_deleted_at IS NOT NULL")
    assert deleted[0][0] > 0
    assert {t.table: t.rows_deleted for t in second.tables}["task_instance"] == deleted[0][0]
    runs = mirror_query(destination, "SELECT count(DISTINCT cycle_id), count(*) FROM airflow._cdc_runs")
    assert tuple(runs[0]) == (2, 2 * len(second.tables))


def test_first_loads_and_resyncs_run_one_table_at_a_time(airflow3_source: str, duckdb_destination: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(table_lanes, "run_in_lanes", lambda items, lanes: calls.append(len(lanes)) or [])
    assert cdc_sync.sync(airflow3_source, duckdb_destination, SCHEMA, parallel_tables=4).ok
    assert cdc_sync.resync(airflow3_source, duckdb_destination, SCHEMA, parallel_tables=4).ok
    assert calls == []


def test_a_lane_that_cannot_connect_leaves_the_cycle_on_the_lanes_it_has(
    airflow3_source: str, duckdb_destination: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    assert cdc_sync.sync(airflow3_source, duckdb_destination, SCHEMA).ok
    opened = 0

    def open_source(url):  # only lanes open here: the cycle's own source connection is already open
        nonlocal opened
        opened += 1
        raise SourceError("too many connections for role \"airflow\"")

    monkeypatch.setattr(table_lanes, "open_source", open_source)
    _touch_every_table(airflow3_source)
    caplog.set_level("WARNING", logger="cdc_sync")
    report = cdc_sync.sync(airflow3_source, duckdb_destination, SCHEMA, parallel_tables=3)
    assert report.ok
    assert "1 table(s) at a time" in caplog.text and "too many connections" in caplog.text
    assert opened == 1  # the first refusal ends the search for more lanes
    assert_mirrored(airflow3_source, duckdb_destination, SCHEMA, "task_instance", AIRFLOW_KEYS["task_instance"])


@pytest.mark.parametrize("value", [0, 9, 1.5, True])
def test_parallel_tables_out_of_range_is_refused_before_anything_connects(value) -> None:
    with pytest.raises(cdc_sync.ConfigError, match="parallel_tables"):
        cdc_sync.sync("postgresql://nobody@127.0.0.1:1/none", "duckdb:///:memory:", parallel_tables=value)


def test_an_in_memory_duckdb_mirror_keeps_one_connection(tmp_path) -> None:
    """A second connection to ":memory:" would be another, empty database: such a mirror never runs lanes."""
    from cdc_sync.destinations.duckdb import DuckDBDestination
    from cdc_sync.urls import make_url

    with DuckDBDestination(make_url("duckdb:///:memory:")) as in_memory:
        assert not in_memory.supports_concurrent_tables
    with DuckDBDestination(make_url(f"duckdb:///{tmp_path}/mirror.duckdb")) as in_a_file:
        assert in_a_file.supports_concurrent_tables
