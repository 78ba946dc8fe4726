"""Tables synced side by side: same mirror, same atomicity, the small tables of a first load beside the largest,
one table at a time for resyncs, and a failure in one lane neither stops the others nor closes connections under
them."""

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

    def spy(items, lanes, side_takes=None):
        lanes_used.append(len(lanes))
        return real(items, lanes, side_takes)

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


def test_resyncs_and_first_loads_beside_mirrored_tables_run_one_table_at_a_time(
    airflow3_source: str, duckdb_destination: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert cdc_sync.sync(airflow3_source, duckdb_destination, SCHEMA, tables=["dag", "job"]).ok
    calls: list[int] = []
    monkeypatch.setattr(table_lanes, "run_in_lanes", lambda items, lanes, side_takes=None: calls.append(len(lanes)))
    assert cdc_sync.sync(airflow3_source, duckdb_destination, SCHEMA, parallel_tables=4).ok  # new tables beside
    assert cdc_sync.resync(airflow3_source, duckdb_destination, SCHEMA, parallel_tables=4).ok
    assert calls == []


def _lanes_by_table(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Which thread loaded each table (the calling thread runs the first lane). The largest table holds the first
    lane until the second has taken a table, as a large one would in a real first load."""
    ran_on: dict[str, str] = {}
    real = table_lanes.run_in_lanes

    def spy(items, lanes, side_takes=None):
        side_started = threading.Event()

        def recording(lane, first: bool):
            def run(plan):
                ran_on[plan.name] = threading.current_thread().name
                if not first:
                    side_started.set()
                elif plan is items[0]:
                    side_started.wait(30)
                return lane(plan)
            return run
        return real(items, [recording(lane, number == 0) for number, lane in enumerate(lanes)], side_takes)

    monkeypatch.setattr(table_lanes, "run_in_lanes", spy)
    return ran_on


def test_a_first_load_loads_the_small_tables_beside_the_largest(airflow3_source: str, tmp_path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh schema: the largest table streams on the first lane while the second loads the small ones; a table
    of SIDE_LANE_MAX_ROWS or more never goes to the second lane, so two large loads never run side by side."""
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("ANALYZE")
        estimates = dict(connection.execute("SELECT relname, reltuples::bigint FROM pg_class "
                                            "WHERE relname IN ('task_instance', 'dag_run', 'job')").fetchall())
    assert estimates["task_instance"] > estimates["dag_run"] > estimates["job"]
    main = threading.current_thread().name

    monkeypatch.setattr(table_lanes, "SIDE_LANE_MAX_ROWS", estimates["dag_run"])
    ran_on = _lanes_by_table(monkeypatch)
    mirror = f"duckdb:///{tmp_path / 'mirror.duckdb'}"
    report = cdc_sync.sync(airflow3_source, mirror, SCHEMA, parallel_tables=2)
    assert report.ok and [t.table for t in report.tables] == sorted(ran_on)  # the report keeps plan order
    side = {table for table, lane in ran_on.items() if lane == "cdc_sync-lane-2"}
    assert side and not side & {"task_instance", "dag_run"}
    assert ran_on["task_instance"] == main and ran_on["dag_run"] == main
    for table in ran_on:
        assert_mirrored(airflow3_source, mirror, SCHEMA, table, AIRFLOW_KEYS[table])


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
