"""The log capture mode on a real Airflow 2.11 schema (built by Airflow 2.11's own ``airflow db migrate``): the
2.x shapes (task instances keyed by their natural key, ``execution_date``, pickled ``conf`` and ``executor_config``)
exact after bursts, TOASTed values, key-only deletes and a TRUNCATE, into DuckDB; and an Airflow upgrade to 3.3
between two log cycles, with the slot in place."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

import cdc_sync
from tests.airflow_schema import airflow_migrate
from tests.conftest import drop_slots
from tests.mirror_check import AIRFLOW_KEYS, assert_mirrored, mirror_query, source_columns

SCHEMA = f"airflow_log2_{uuid.uuid4().hex[:8]}"  # slot names are global to the server: one of this run's own
TABLES = ["dag", "dag_run", "task_instance", "job", "task_fail"]
KEYS = {**AIRFLOW_KEYS, "task_fail": ["id"]}
# About 13 kB of incompressible bytes: stored out of line (TOAST), so an UPDATE of another column logs it as 'u'.
BIG_BYTES = "(SELECT string_agg(decode(md5(g::text || %s), 'hex'), ''::bytea) FROM generate_series(1, 800) AS g)"

pytestmark = pytest.mark.airflow2


@pytest.fixture
def logical_source2(logical_decoding_available: None, pg_airflow2_source: str) -> str:
    """An Airflow 2.11 source whose replication slots are dropped at teardown (they pin WAL for the whole server)."""
    yield pg_airflow2_source
    drop_slots(pg_airflow2_source)


def sync(source: str, destination: str, tables: list[str] | None = TABLES) -> dict[str, cdc_sync.TableReport]:
    report = cdc_sync.sync(source, destination, SCHEMA, tables=tables, capture="log")
    assert report.ok, report.failed
    return {table.table: table for table in report.tables}


def assert_exact(source: str, destination: str, tables=TABLES) -> None:
    for table in tables:
        assert_mirrored(source, destination, SCHEMA, table, KEYS[table])


def write(source: str, *statements: str | tuple[str, tuple]) -> None:
    with psycopg.connect(source, autocommit=True) as connection:
        for statement in statements:
            sql, params = statement if isinstance(statement, tuple) else (statement, ())
            connection.execute(sql, params)


def airflow2_burst(source: str, run_id: str) -> None:
    """What a 2.x scheduler does: retries (same natural key), a manual run with a large pickled conf, its three
    mapped task instances with a large executor_config."""
    write(source,
          "UPDATE task_instance SET state = 'up_for_retry', try_number = try_number + 1, hostname = 'wörker-2 ✓', "
          "updated_at = clock_timestamp() WHERE run_id IN ('scheduled__1', 'scheduled__2')",
          (f"INSERT INTO dag_run (dag_id, run_id, execution_date, queued_at, state, run_type, external_trigger, conf, "
           f"clear_number, updated_at) VALUES ('dag_1', %s, clock_timestamp(), clock_timestamp(), 'running', "
           f"'manual', true, {BIG_BYTES}, 0, clock_timestamp())", (run_id, "conf")),
          (f"INSERT INTO task_instance (task_id, dag_id, run_id, map_index, state, try_number, max_tries, pool, "
           f"pool_slots, queue, priority_weight, operator, executor_config, updated_at) SELECT 'mapped', 'dag_1', %s, "
           f"m, 'queued', 0, 1, 'default_pool', 1, 'default', 1, 'PythonOperator', {BIG_BYTES}, clock_timestamp() "
           f"FROM generate_series(0, 2) AS m", (run_id, "executor_config")))


def test_airflow2_in_log_mode_bursts_toast_deletes_and_truncate(logical_source2: str, duckdb_destination: str) -> None:
    """DuckDB only: what differs from Airflow 3 is on the source's side; both dialects' log MERGE run in
    tests/test_log_capture.py."""
    source, destination = logical_source2, duckdb_destination
    sync(source, destination)
    assert_exact(source, destination)

    airflow2_burst(source, "manual__new")
    burst = sync(source, destination)
    assert burst["task_instance"].rows_read == 8 + 3 and burst["dag_run"].rows_read == 1
    assert_exact(source, destination)

    # The mapped task instances run: their executor_config is not rewritten, so the log sends it as unchanged.
    write(source, "UPDATE task_instance SET state = 'success', end_date = clock_timestamp(), "
                  "updated_at = clock_timestamp() WHERE run_id = 'manual__new'")
    assert sync(source, destination)["task_instance"].rows_written == 3
    assert_exact(source, destination)
    [(big,)] = mirror_query(destination, f'SELECT min(octet_length("executor_config")) FROM "{SCHEMA}"."task_instance" '
                                         "WHERE run_id = 'manual__new'")
    assert big == 800 * 16

    # Deletes carry only the natural primary key of 2.x; a TRUNCATE empties the mirror's job first.
    write(source, "DELETE FROM task_fail WHERE run_id = 'scheduled__3'",
          "DELETE FROM task_instance WHERE run_id = 'scheduled__3'", "TRUNCATE job",
          "INSERT INTO job (dag_id, state, job_type, latest_heartbeat, hostname) "
          "VALUES ('dag_1', 'running', 'SchedulerJob', now(), 'after-truncate')")
    gone = sync(source, destination)
    assert (gone["task_instance"].rows_deleted, gone["task_fail"].rows_deleted) == (4, 1)
    assert_exact(source, destination)
    assert mirror_query(destination, f'SELECT count(*) FROM "{SCHEMA}"."job" WHERE "_cdc_deleted_at" IS NULL') \
        == [(1,)]


@pytest.mark.slow
def test_an_airflow_upgrade_between_log_cycles_keeps_the_mirror_exact(logical_source2: str,
                                                                     duckdb_destination: str) -> None:
    """``airflow db migrate`` (2.11 → 3.3) with the slot in place: it drops, renames, adds and retypes columns of
    published tables and drops task_fail. The next log cycle re-reads the tables whose columns changed (the drift
    path) and the later cycles read the log again; the mirror is exact after each."""
    source, destination = logical_source2, duckdb_destination
    sync(source, destination, tables=None)
    airflow2_burst(source, "manual__before")
    sync(source, destination, tables=None)
    # Changes the slot holds when the migration starts: the migration's own DML and DDL come after them.
    write(source, "UPDATE task_instance SET state = 'success', updated_at = clock_timestamp() "
                  "WHERE run_id = 'manual__before'",
          "DELETE FROM task_instance WHERE run_id = 'scheduled__4'")

    started = time.monotonic()
    # .venv's Airflow 3.3, through psycopg2 as Airflow defaults to (3.3.2's callback migration fails on psycopg 3).
    airflow_migrate(source.replace("postgresql://", "postgresql+psycopg2://"))
    migrate_seconds = time.monotonic() - started
    assert "logical_date" in source_columns(source, "dag_run")

    after = sync(source, destination, tables=None)
    # A migration that rewrote dag_run and task_instance: re-read whole once, in a snapshot after the slot's position.
    assert after["task_instance"].rows_read == after["task_instance"].rows_written > 100
    upgraded = ["dag", "dag_run", "dag_tag", "import_error", "job", "task_instance"]
    assert_exact(source, destination, upgraded)
    ids = mirror_query(destination, f'SELECT count(DISTINCT id), count(*) FROM "{SCHEMA}".task_instance '
                                    'WHERE "_cdc_deleted_at" IS NULL')
    assert ids[0][0] == ids[0][1] > 100, "Airflow 3's new UUID id reached every live task instance"

    # Airflow 3 writes (a retry takes a new UUID): read from the log, no copy.
    write(source, "UPDATE task_instance SET state = 'failed', try_number = try_number + 1, id = gen_random_uuid(), "
                  "updated_at = clock_timestamp() WHERE run_id = 'scheduled__1'")
    later = sync(source, destination, tables=None)
    assert later["task_instance"].rows_written == 4 and later["dag_run"].rows_read == 0
    assert_exact(source, destination, upgraded)
    print(f"airflow db migrate 2.11 -> 3.3 took {migrate_seconds:.1f} s")
