"""Writers the way Airflow and SQLAlchemy write, on the real servers, with cycles running in between: savepoints
(nested, released, rolled back) inside long transactions, ids that commit out of order, and retries that give a
task instance a new id. After the writers finish, one more cycle must leave an exact mirror. The PostgreSQL
scenarios run in both capture modes: the watermark mode's snapshots, and the log mode's slot."""

from __future__ import annotations

import random
import threading
import time
import uuid

import psycopg
import pytest

import cdc_sync
from tests.mirror_check import AIRFLOW_KEYS, assert_mirrored

SCHEMA = f"airflow_writers_{uuid.uuid4().hex[:8]}"  # the log mode's slot name is global to the server
TABLES = ["dag", "dag_run", "job", "task_instance", "log"]


@pytest.fixture(params=["query", "log"])
def capture(request: pytest.FixtureRequest) -> str:
    """The capture mode of every cycle of the test; the log mode's slots are dropped after it."""
    if request.param == "log":
        request.getfixturevalue("logical_source")
    return request.param


def sync(source: str, destination: str, capture: str = "query") -> None:
    report = cdc_sync.sync(source, destination, SCHEMA, tables=TABLES, capture=capture)
    assert report.ok, report.summary()


def assert_exact(source: str, destination: str) -> None:
    for table in TABLES:
        assert_mirrored(source, destination, SCHEMA, table, AIRFLOW_KEYS[table])


def new_task_instance(connection: psycopg.Connection, run_id: str, task_id: str) -> None:
    connection.execute(
        "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, state, try_number, max_tries, pool, "
        "pool_slots, span_status, updated_at, hostname) VALUES (gen_random_uuid(), %s, 'dag_1', %s, -1, "
        "'scheduled', 0, 1, 'default_pool', 1, 'not_started', clock_timestamp(), '')", (task_id, run_id))


def first_run_id(connection: psycopg.Connection) -> str:
    return connection.execute("SELECT run_id FROM dag_run WHERE dag_id = 'dag_1' ORDER BY id LIMIT 1").fetchone()[0]


def log_row(connection: psycopg.Connection, event: str) -> None:
    connection.execute("INSERT INTO log (dttm, event) VALUES (clock_timestamp(), %s)", (event,))


def test_rows_written_in_savepoints_of_a_transaction_open_across_cycles_are_mirrored(
        airflow3_source: str, duckdb_destination: str, capture: str) -> None:
    """The parent is open at the read while a later transaction has committed, so the savepoints' xids lie below
    the read snapshot's xmax without being listed in it: they must still count as unseen."""
    sync(airflow3_source, duckdb_destination, capture)
    with psycopg.connect(airflow3_source) as long_writer, psycopg.connect(airflow3_source, autocommit=True) as other:
        run_id = first_run_id(long_writer)
        long_writer.execute("UPDATE job SET latest_heartbeat = clock_timestamp() WHERE id = (SELECT min(id) FROM job)")
        with long_writer.transaction():  # SAVEPOINT … RELEASE
            new_task_instance(long_writer, run_id, "in_savepoint")
            long_writer.execute("UPDATE dag SET is_paused = NOT is_paused WHERE dag_id = 'dag_1'")
            with long_writer.transaction():  # nested, released
                new_task_instance(long_writer, run_id, "in_nested_savepoint")
                log_row(long_writer, "nested")
            with pytest.raises(RuntimeError), long_writer.transaction():  # nested, rolled back
                new_task_instance(long_writer, run_id, "rolled_back")
                raise RuntimeError("roll the savepoint back")
        with long_writer.transaction():  # a retry: new id, same natural key, in a savepoint
            long_writer.execute("UPDATE task_instance SET id = gen_random_uuid(), try_number = try_number + 1, "
                                "updated_at = clock_timestamp() WHERE task_id = 'in_savepoint'")
        # Later transactions commit while the parent stays open: the read's snapshot lies beyond the savepoints.
        log_row(other, "committed_meanwhile")
        new_task_instance(other, run_id, "committed_meanwhile")
        sync(airflow3_source, duckdb_destination, capture)
        sync(airflow3_source, duckdb_destination, capture)
        long_writer.commit()
    sync(airflow3_source, duckdb_destination, capture)
    assert_exact(airflow3_source, duckdb_destination)
    tasks = {key[1] for key in _mirror_keys(duckdb_destination, "task_instance")}
    assert {"in_savepoint", "in_nested_savepoint", "committed_meanwhile"} <= tasks
    assert "rolled_back" not in tasks


def test_an_id_committed_after_a_larger_one_is_mirrored(airflow3_source: str, duckdb_destination: str,
                                                        capture: str) -> None:
    """Transaction T takes an id and stays open while a larger id commits and is read; T's id must be read once
    T commits, however many cycles pass meanwhile."""
    sync(airflow3_source, duckdb_destination, capture)
    with psycopg.connect(airflow3_source) as late, psycopg.connect(airflow3_source, autocommit=True) as other:
        log_row(late, "late")
        log_row(other, "early")
        sync(airflow3_source, duckdb_destination, capture)
        late.commit()
        sync(airflow3_source, duckdb_destination, capture)
        log_row(other, "after")
        sync(airflow3_source, duckdb_destination, capture)
    assert_exact(airflow3_source, duckdb_destination)
    assert {"late", "early", "after"} <= {row[0] for row in _mirror_query(duckdb_destination,
                                                                           f'SELECT event FROM "{SCHEMA}".log')}


def test_busy_writers_with_savepoints_and_late_commits_leave_an_exact_mirror(
        airflow3_source: str, destination: str, capture: str) -> None:
    """Four writers as a busy scheduler: transactions of random length, savepoints kept or rolled back, ids taken
    early and committed late, retries that renew a task instance's id; cycles run throughout."""
    sync(airflow3_source, destination, capture)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with psycopg.connect(airflow3_source) as connection:
                run_id = first_run_id(connection)
                connection.commit()
                while not stop.is_set():
                    for _ in range(rng.randint(1, 4)):
                        task = f"w{seed}_{uuid.uuid4().hex[:8]}"
                        log_row(connection, task)
                        try:
                            with connection.transaction():
                                new_task_instance(connection, run_id, task)
                                # each writer its own DAG row: writers never wait on each other's row locks
                                connection.execute("UPDATE dag SET last_parsed_time = clock_timestamp() "
                                                   "WHERE dag_id = %s", (f"dag_{seed + 1}",))
                                if rng.random() < 0.3:
                                    raise RuntimeError("roll back")
                        except RuntimeError:
                            pass
                        if rng.random() < 0.3:
                            connection.execute(
                                "UPDATE task_instance SET id = gen_random_uuid(), try_number = try_number + 1, "
                                "updated_at = clock_timestamp() WHERE task_id = (SELECT task_id FROM task_instance "
                                "WHERE task_id LIKE %s ORDER BY random() LIMIT 1)", (f"w{seed}_%",))
                        time.sleep(rng.random() * 0.05)
                    time.sleep(rng.random() * 0.3)  # the transaction stays open across a cycle's read
                    connection.commit()
        except BaseException as error:  # surfaced by the test
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            sync(airflow3_source, destination, capture)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors
    sync(airflow3_source, destination, capture)
    assert_exact(airflow3_source, destination)


def _mirror_query(destination: str, sql: str) -> list[tuple]:
    from tests.mirror_check import mirror_query

    return mirror_query(destination, sql)


def _mirror_keys(destination: str, table: str, schema: str = SCHEMA) -> set[tuple]:
    key = ", ".join(f'"{column}"' for column in AIRFLOW_KEYS[table])
    return set(_mirror_query(destination, f'SELECT {key} FROM "{schema}"."{table}" WHERE "_cdc_deleted_at" IS NULL'))


# ---------------------------------------------------------------------------------------------------------------
# MariaDB: InnoDB assigns auto-increment ids at insert time, so ids commit out of order there too; savepoints
# share their transaction's id, and open writers are seen through information_schema.innodb_trx.

def mysql_log_row(connection, event: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO log (dttm, event) VALUES (UTC_TIMESTAMP(6), %s)", (event,))


def mysql_task_instance(connection, run_id: str, task_id: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, state, try_number, max_tries, pool, "
            "pool_slots, span_status, updated_at, hostname, unixname, queue, priority_weight) VALUES "
            "(%s, %s, 'dag_2', %s, -1, 'scheduled', 0, 1, 'default_pool', 1, 'not_started', UTC_TIMESTAMP(6), '', "
            "'airflow', 'default', 1)", (str(uuid.uuid4()), task_id, run_id))


def test_mariadb_late_ids_and_savepoints_across_cycles_leave_an_exact_mirror(
        mysql_airflow3_source: str, duckdb_destination: str) -> None:
    from tests.airflow_schema import mysql_connect
    from tests.test_source_mysql import assert_mirrored as assert_mysql_mirrored
    from tests.test_source_mysql import database_of

    tables = ["dag_run", "task_instance", "log"]

    def mysql_sync() -> None:
        report = cdc_sync.sync(mysql_airflow3_source, duckdb_destination, "airflow", tables=tables)
        assert report.ok, report.summary()

    mysql_sync()
    database = database_of(mysql_airflow3_source)
    with mysql_connect(database) as late, mysql_connect(database, autocommit=True) as other:
        mysql_log_row(late, "late")  # takes an id, stays open
        with late.cursor() as cursor:
            cursor.execute("SELECT run_id FROM dag_run WHERE dag_id = 'dag_2' ORDER BY id LIMIT 1")
            (run_id,) = cursor.fetchone()
            cursor.execute("SAVEPOINT kept")
            mysql_task_instance(late, run_id, "in_savepoint")
            cursor.execute("RELEASE SAVEPOINT kept")
            cursor.execute("SAVEPOINT dropped")
            mysql_task_instance(late, run_id, "rolled_back")
            cursor.execute("ROLLBACK TO SAVEPOINT dropped")
        mysql_log_row(other, "early")  # a larger id commits first
        mysql_task_instance(other, run_id, "committed_meanwhile")
        mysql_sync()
        mysql_sync()
        late.commit()
        mysql_sync()
        mysql_log_row(other, "after")
    mysql_sync()
    for table in tables:
        assert_mysql_mirrored(mysql_airflow3_source, duckdb_destination, table)
    tasks = {key[1] for key in _mirror_keys(duckdb_destination, "task_instance", "airflow")}
    assert {"in_savepoint", "committed_meanwhile"} <= tasks and "rolled_back" not in tasks
