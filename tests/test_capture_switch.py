"""A mirror switching capture modes, as ``auto`` makes it do when the source's rights change: query → log → query →
log on a real Airflow 3 source, exact after every cycle, and no switch is a full copy (cdc_sync.log_capture keeps the
watermark mode's position valid through log cycles)."""

from __future__ import annotations

import psycopg
import pytest

from cdc_sync import log_capture
from tests.mirror_check import mirror_query
from tests.test_core_cycle import scheduler_burst
from tests.test_log_capture import SCHEMA, assert_exact, stored_positions, sync

TI_ROWS = "SELECT count(*) FROM task_instance"


def burst(source: str, run_id: str) -> None:
    """8 task instances retried under a new id, a new run and its 3 mapped task instances."""
    with psycopg.connect(source, autocommit=True) as connection:
        connection.execute("UPDATE task_instance SET state = 'failed', try_number = try_number + 1, "
                           "id = gen_random_uuid(), updated_at = clock_timestamp() "
                           "WHERE run_id IN ('scheduled__1', 'scheduled__2')")
        connection.execute("INSERT INTO dag_run (dag_id, run_id, logical_date, run_after, state, run_type, "
                           "clear_number, updated_at) VALUES ('dag_1', %s, clock_timestamp(), clock_timestamp(), "
                           "'running', 'manual', 0, clock_timestamp())", (run_id,))
        connection.execute("INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, state, try_number, "
                           "max_tries, pool, pool_slots, span_status, updated_at, hostname) SELECT gen_random_uuid(), "
                           "'mapped', 'dag_1', %s, m, NULL, 0, 1, 'default_pool', 1, 'not_started', "
                           "clock_timestamp(), '' FROM generate_series(0, 2) AS m", (run_id,))


def read_counts(report) -> dict[str, int]:
    return {table.table: table.rows_read for table in report.tables}


def mirror_rows(destination: str, table: str) -> int:
    return mirror_query(destination, f'SELECT count(*) FROM "{SCHEMA}"."{table}"')[0][0]


def test_switching_modes_both_ways_reads_only_the_changes_and_loses_or_doubles_nothing(
        logical_source: str, duckdb_destination: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with psycopg.connect(logical_source) as connection:
        total = connection.execute(TI_ROWS).fetchone()[0]
    sync(logical_source, duckdb_destination, "query")
    scheduler_burst(logical_source)

    # query → log: the slot is made now, and each table reads its rows changed since its query position, in a
    # snapshot after the slot's position (the changes since are replayed by the next cycle, harmlessly).
    switched = read_counts(sync(logical_source, duckdb_destination, "log"))
    assert switched["task_instance"] == 8 + 3 < total  # the retried and the new task instances, not a full copy
    assert all(position is not None for position in stored_positions(duckdb_destination).values())
    assert_exact(logical_source, duckdb_destination)
    burst(logical_source, "manual__b2")
    assert read_counts(sync(logical_source, duckdb_destination, "log"))["task_instance"] == 8 + 8 + 3  # from the log
    assert_exact(logical_source, duckdb_destination)

    # A run added after this log cycle has taken its end of the log but before it reads the tables: its snapshot
    # sees the row, the log it applies does not, so the mirror gets it only from the next cycle, in either mode.
    original_open = log_capture.LogSession.open

    def open_then_commit(*args, **kwargs):
        session = original_open(*args, **kwargs)
        with psycopg.connect(logical_source, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO dag_run (dag_id, run_id, logical_date, run_after, state, run_type, clear_number, "
                "updated_at) VALUES ('dag_1', 'manual__between', clock_timestamp(), clock_timestamp(), 'queued', "
                "'manual', 0, clock_timestamp())")
        return session

    monkeypatch.setattr(log_capture.LogSession, "open", open_then_commit)
    sync(logical_source, duckdb_destination, "log")
    monkeypatch.undo()
    with psycopg.connect(logical_source, autocommit=True) as connection:
        connection.execute("DELETE FROM task_instance WHERE run_id = 'scheduled__3'")

    # log → query: the query position stayed where the query path last read, so the run committed in between,
    # the deletions and everything the log applied since are read again once; nothing is lost.
    back = sync(logical_source, duckdb_destination, "query")
    assert {t.table: t.rows_deleted for t in back.tables}["task_instance"] == 4
    assert_exact(logical_source, duckdb_destination)
    assert read_counts(sync(logical_source, duckdb_destination, "query"))["task_instance"] == 0  # settled

    # query → log again: the positions of the old slot are not trusted (the query cycles stored none).
    burst(logical_source, "manual__b3")
    assert read_counts(sync(logical_source, duckdb_destination, "log"))["task_instance"] == 8 + 3
    assert_exact(logical_source, duckdb_destination)
    with psycopg.connect(logical_source) as connection:
        assert mirror_rows(duckdb_destination, "task_instance") == connection.execute(
            "SELECT count(*) FROM task_instance").fetchone()[0] + 4  # the 4 deleted stay, soft-deleted
        assert mirror_rows(duckdb_destination, "dag_run") == connection.execute(
            "SELECT count(*) FROM dag_run").fetchone()[0]


def test_a_table_read_again_after_a_rewrite_by_ddl_is_not_undone_by_older_log_changes(
        logical_source: str, duckdb_destination: str) -> None:
    """A migration's ALTER TABLE rewrites rows without logging them. The table is read again through the query path
    (its columns changed), and the slot still holds the changes before the rewrite: the next cycle skips those its
    read saw, instead of writing their older values over the rewritten ones."""
    sync(logical_source, duckdb_destination, "log")
    sync(logical_source, duckdb_destination, "log")
    with psycopg.connect(logical_source, autocommit=True) as connection:
        connection.execute("UPDATE dag_run SET state = 'queued', updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__5'")
        connection.execute("ALTER TABLE dag_run ADD COLUMN note text DEFAULT 'n'")
        connection.execute("ALTER TABLE dag_run ALTER COLUMN state TYPE varchar(50) USING upper(state)")
    reread = read_counts(sync(logical_source, duckdb_destination, "log"))
    assert reread["dag_run"] == 50  # the new column: read in full
    assert_exact(logical_source, duckdb_destination)
    next_cycle = read_counts(sync(logical_source, duckdb_destination, "log"))
    assert mirror_query(duckdb_destination, f'SELECT state FROM "{SCHEMA}"."dag_run" '
                                            "WHERE run_id = 'scheduled__5'") == [("QUEUED",)]
    assert_exact(logical_source, duckdb_destination)
    assert next_cycle["dag_run"] == 0
