"""The core cycle end to end: real Airflow 3 schema on PostgreSQL → DuckDB and PostgreSQL mirrors."""

from __future__ import annotations

import psycopg
import pytest

import cdc_sync
from cdc_sync.errors import TableSyncError
from cdc_sync.state import StateStore
from tests.mirror_check import AIRFLOW_KEYS, assert_mirrored, mirror_query

KEYS = AIRFLOW_KEYS
SCHEMA = "airflow-qwe123"


def sync(source: str, destination: str, **options):
    return cdc_sync.sync(source, destination, SCHEMA, additional_tables=["log"], **options)


def assert_all_mirrored(source: str, destination: str) -> None:
    for table, key in KEYS.items():
        assert assert_mirrored(source, destination, SCHEMA, table, key) > 0 or table == "import_error"


def scheduler_burst(source: str) -> None:
    """What a scheduler does between two cycles: new runs and task instances, state changes, retries, a pause."""
    with psycopg.connect(source, autocommit=True) as connection:
        connection.execute(
            "UPDATE task_instance SET state = 'failed', try_number = try_number + 1, id = gen_random_uuid(), "
            "end_date = clock_timestamp(), hostname = 'wörker-2 ✓', next_kwargs = '{\"retry\": [1, 2]}', "
            "executor_config = '\\x00ff10'::bytea, updated_at = clock_timestamp() "
            "WHERE run_id IN ('scheduled__1', 'scheduled__2')")
        connection.execute(
            "INSERT INTO dag_run (dag_id, run_id, logical_date, run_after, state, run_type, conf, clear_number, "
            "updated_at) VALUES ('dag_1', 'manual__new', clock_timestamp(), clock_timestamp(), 'running', 'manual', "
            "'{\"ü\": null}', 0, clock_timestamp())")
        connection.execute(
            "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, state, try_number, max_tries, pool, "
            "pool_slots, span_status, updated_at, hostname) SELECT gen_random_uuid(), 'mapped', 'dag_1', "
            "'manual__new', m, NULL, 0, 1, 'default_pool', 1, 'not_started', clock_timestamp(), '' "
            "FROM generate_series(0, 2) AS m")
        connection.execute("UPDATE dag SET is_paused = NOT is_paused WHERE dag_id = 'dag_2'")
        connection.execute("INSERT INTO log (dttm, event, extra) VALUES (clock_timestamp(), 'cli_task_run', NULL)")


def test_initial_then_incremental_cycle_mirrors_every_column(airflow3_source: str, destination: str) -> None:
    first = sync(airflow3_source, destination)
    assert first.ok
    assert {t.table: t.strategy for t in first.tables} == {
        "dag": "row_version", "dag_run": "incremental", "dag_tag": "row_version", "import_error": "row_version",
        "job": "row_version",
        "task_instance": "incremental", "log": "append",
    }
    assert_all_mirrored(airflow3_source, destination)

    scheduler_burst(airflow3_source)
    second = sync(airflow3_source, destination)
    by_table = {t.table: t for t in second.tables}
    assert by_table["task_instance"].rows_written == 8 + 3  # two runs of four retried, three new mapped
    assert by_table["dag_run"].rows_written == 1
    assert by_table["dag"].rows_written == 1
    assert by_table["log"].rows_read == 1
    assert_all_mirrored(airflow3_source, destination)


def test_cycle_without_change_reads_almost_nothing_and_writes_nothing(airflow3_source: str, destination: str) -> None:
    sync(airflow3_source, destination)
    again = {t.table: t for t in sync(airflow3_source, destination).tables}
    assert all(t.rows_written == 0 and t.rows_deleted == 0 for t in again.values()), again
    # Incremental reads re-read only the 5 s lookback before the high-water mark (runs are 1 s apart).
    assert again["dag_run"].rows_read <= 6
    assert again["task_instance"].rows_read <= 6 * 4
    assert again["log"].rows_read == 0
    synced_at = mirror_query(destination, f'SELECT count(DISTINCT "_cdc_synced_at") FROM "{SCHEMA}"."task_instance"')
    assert synced_at[0][0] == 1  # no row was rewritten by the second cycle


def test_row_stamped_early_and_committed_late_is_not_missed(airflow3_source: str, destination: str) -> None:
    sync(airflow3_source, destination, lookback_seconds=0)
    late_writer = psycopg.connect(airflow3_source)
    try:
        # The writer stamps its row first (like the ORM at flush time) but commits only after a cycle has run.
        late_writer.execute("UPDATE task_instance SET state = 'up_for_retry', updated_at = clock_timestamp() "
                            "WHERE run_id = 'scheduled__3' AND task_id = 'task_1'")
        with psycopg.connect(airflow3_source, autocommit=True) as other:
            other.execute("UPDATE task_instance SET state = 'running', updated_at = clock_timestamp() "
                          "WHERE run_id = 'scheduled__4' AND task_id = 'task_1'")
        middle = {t.table: t for t in sync(airflow3_source, destination, lookback_seconds=0).tables}
        assert middle["task_instance"].rows_written == 1  # only the committed row
        late_writer.commit()
    finally:
        late_writer.close()
    last = {t.table: t for t in sync(airflow3_source, destination, lookback_seconds=0).tables}
    assert last["task_instance"].rows_written == 1
    state = mirror_query(destination, f'SELECT state FROM "{SCHEMA}"."task_instance" '
                         "WHERE run_id = 'scheduled__3' AND task_id = 'task_1'")
    assert state == [("up_for_retry",)]
    assert_mirrored(airflow3_source, destination, SCHEMA, "task_instance", KEYS["task_instance"])


def test_failure_before_commit_loses_nothing_and_duplicates_nothing(
    airflow3_source: str, destination: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync(airflow3_source, destination)
    scheduler_burst(airflow3_source)
    before = mirror_query(destination, f'SELECT count(*), max("_cdc_synced_at") FROM "{SCHEMA}"."task_instance"')
    marks_before = {w.table_name: w.high_water_mark for w in cdc_sync.status(destination, SCHEMA)}

    original = StateStore.record_run
    crashes = []

    def crash_for_task_instance(self, run):  # the last write before COMMIT
        if run.table_name == "task_instance" and run.status == "ok":
            crashes.append(run)
            raise cdc_sync.DestinationError("injected crash between staging and commit")
        return original(self, run)

    monkeypatch.setattr(StateStore, "record_run", crash_for_task_instance)
    with pytest.raises(TableSyncError, match="task_instance"):
        sync(airflow3_source, destination)
    monkeypatch.undo()
    assert len(crashes) == 1

    assert mirror_query(destination, f'SELECT count(*), max("_cdc_synced_at") FROM "{SCHEMA}"."task_instance"') \
        == before
    marks = {w.table_name: w for w in cdc_sync.status(destination, SCHEMA)}
    assert marks["task_instance"].high_water_mark == marks_before["task_instance"]
    assert "injected crash" in marks["task_instance"].last_error
    assert marks["dag_run"].last_error is None  # the other tables were committed

    recovered = sync(airflow3_source, destination)
    assert recovered.ok
    assert_all_mirrored(airflow3_source, destination)
    runs = mirror_query(destination, f"SELECT status, count(*) FROM \"{SCHEMA}\".\"_cdc_runs\" "
                        "WHERE table_name = 'task_instance' GROUP BY status ORDER BY status")
    assert runs == [("failed", 1), ("ok", 2)]


def test_deleted_rows_are_soft_deleted_then_revived(airflow3_source: str, destination: str) -> None:
    sync(airflow3_source, destination)
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("DELETE FROM dag_run WHERE run_id = 'scheduled__5'")  # cascades to its task instances
        connection.execute("DELETE FROM import_error")
    report = {t.table: t for t in sync(airflow3_source, destination).tables}
    assert report["dag_run"].rows_deleted == 1
    assert report["task_instance"].rows_deleted == 4
    assert report["import_error"].rows_deleted == 1  # a table that may legitimately become empty
    kept = mirror_query(destination, f'SELECT count(*) FROM "{SCHEMA}"."task_instance" '
                        "WHERE run_id = 'scheduled__5' AND \"_cdc_deleted_at\" IS NOT NULL")
    assert kept == [(4,)]  # history survives, marked deleted
    assert_all_mirrored(airflow3_source, destination)

    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("INSERT INTO dag_run (dag_id, run_id, run_after, run_type, clear_number, updated_at, state) "
                           "VALUES ('dag_1', 'scheduled__5', now(), 'scheduled', 0, clock_timestamp(), 'queued')")
    sync(airflow3_source, destination)
    revived = mirror_query(destination, f'SELECT state, "_cdc_deleted_at" FROM "{SCHEMA}"."dag_run" '
                           "WHERE run_id = 'scheduled__5'")
    assert revived == [("queued", None)]


def test_hard_deletes_remove_rows(airflow3_source: str, duckdb_destination: str) -> None:
    sync(airflow3_source, duckdb_destination, deletes="hard")
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("DELETE FROM dag_run WHERE run_id IN ('scheduled__6', 'scheduled__7')")
    report = {t.table: t for t in sync(airflow3_source, duckdb_destination, deletes="hard").tables}
    assert report["task_instance"].rows_deleted == 8
    count = mirror_query(duckdb_destination, f'SELECT count(*) FROM "{SCHEMA}"."task_instance" '
                         "WHERE run_id IN ('scheduled__6', 'scheduled__7')")
    assert count == [(0,)]


def test_empty_read_of_a_table_that_should_not_empty_deletes_nothing(
    airflow3_source: str, duckdb_destination: str
) -> None:
    sync(airflow3_source, duckdb_destination)
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("DELETE FROM dag_run")  # cascades: task_instance empties too
    report = {t.table: t for t in sync(airflow3_source, duckdb_destination).tables}
    assert report["dag_run"].rows_deleted == 0
    assert any("came back empty" in w for w in report["dag_run"].warnings)
    live = mirror_query(duckdb_destination, f'SELECT count(*) FROM "{SCHEMA}"."dag_run" '
                        'WHERE "_cdc_deleted_at" IS NULL')
    assert live == [(50,)]


def test_resync_rereads_one_table_and_resets_its_watermark(airflow3_source: str, duckdb_destination: str) -> None:
    sync(airflow3_source, duckdb_destination)
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        # A raw SQL update that does not bump updated_at: invisible to the cursor, fixed by a resync.
        connection.execute("UPDATE task_instance SET hostname = 'patched' WHERE run_id = 'scheduled__8'")
    assert {t.table: t for t in sync(airflow3_source, duckdb_destination).tables}["task_instance"].rows_written == 0
    report = cdc_sync.resync(airflow3_source, duckdb_destination, SCHEMA, additional_tables=["log"],
                             only=["task_instance"])
    assert [t.table for t in report.tables] == ["task_instance"]
    assert report.tables[0].strategy == "full"
    assert report.tables[0].rows_read == 200 and report.tables[0].rows_written == 4
    assert_mirrored(airflow3_source, duckdb_destination, SCHEMA, "task_instance", KEYS["task_instance"])


def test_overlap_rereads_only_rows_written_after_the_last_read(airflow3_source: str, destination: str) -> None:
    sync(airflow3_source, destination)
    scheduler_burst(airflow3_source)  # rows stamped now: inside the lookback window of the next cycles
    burst = {t.table: t for t in sync(airflow3_source, destination).tables}
    assert burst["task_instance"].rows_read == 11
    quiet = {t.table: t for t in sync(airflow3_source, destination).tables}
    # PostgreSQL tells which rows the last read could not see (xmin), so the overlap re-reads none of the burst.
    assert quiet["task_instance"].rows_read == 0 and quiet["dag_run"].rows_read == 0
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        # Stamped inside the overlap window but written after the last read: still picked up.
        connection.execute("UPDATE task_instance SET state = 'skipped', updated_at = updated_at "
                           "WHERE run_id = 'manual__new' AND map_index = 0")
    late = {t.table: t for t in sync(airflow3_source, destination).tables}
    assert (late["task_instance"].rows_read, late["task_instance"].rows_written) == (1, 1)
    assert_all_mirrored(airflow3_source, destination)
