"""The MySQL/MariaDB source against a real Airflow 3 schema on MariaDB (built by ``airflow db migrate``)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

import cdc_sync
from cdc_sync.errors import SourceError
from cdc_sync.sources import open_source
from cdc_sync.sources.mysql import INNODB_TRX_LAG, MySQLSnapshot, MySQLSource
from cdc_sync.types import LogicalType
from cdc_sync.urls import make_url
from tests.airflow_schema import fill_airflow3_mysql, mysql_connect, mysql_execute
from tests.mirror_check import AIRFLOW_KEYS, mirror_query, mirror_rows, normalize
from tests.reset_probes import record_reset_probes

SCHEMA = "airflow"
KEYS = AIRFLOW_KEYS


def database_of(url: str) -> str:
    return make_url(url).database


def sync(source: str, destination: str, **options: Any):
    return cdc_sync.sync(source, destination, schema=SCHEMA, additional_tables=["log"], **options)


def source_rows(url: str, table: str, key: list[str]) -> tuple[list[str], dict[tuple, dict[str, Any]]]:
    """The table read with the driver's own conversions (not cdc_sync's), normalized like the mirror side."""
    with mysql_connect(database_of(url)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS "
                       "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION", (table,))
        described = cursor.fetchall()
        columns = [name for name, _, _ in described]
        cursor.execute(f"SELECT {', '.join(f'`{c}`' for c in columns)} FROM `{table}`")
        rows = cursor.fetchall()
    instants = {name for name, data_type, _ in described if data_type == "timestamp"}
    booleans = {name for name, _, column_type in described if column_type == "tinyint(1)"}
    keyed: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        record = {}
        for name, value in zip(columns, row, strict=True):
            if name in instants and value is not None:
                value = value.replace(tzinfo=UTC)  # the session renders TIMESTAMP in UTC
            elif name in booleans and value is not None:
                value = bool(value)
            record[name] = normalize(value)
        keyed[tuple(record[k] for k in key)] = record
    return columns, keyed


def assert_mirrored(source: str, destination: str, table: str) -> int:
    """Every live source row equals its mirror copy, column by column; returns the number compared."""
    key = KEYS[table]
    columns, expected = source_rows(source, table, key)
    actual = mirror_rows(destination, SCHEMA, table, columns, key)
    assert set(actual) == set(expected), (
        f"{table}: missing {sorted(set(expected) - set(actual))[:3]}, extra {sorted(set(actual) - set(expected))[:3]}"
    )
    for identity, row in expected.items():
        for column, value in row.items():
            mirrored = actual[identity][column]
            assert mirrored == value and type(mirrored) is type(value), (
                f"{table}{identity}.{column}: source {value!r} != mirror {mirrored!r}"
            )
    return len(expected)


def task_instance_rows(destination: str, run_id: str) -> list[tuple]:
    return mirror_query(destination, f'SELECT task_id, state, "_cdc_deleted_at" FROM "{SCHEMA}".task_instance '
                                     "WHERE run_id = %s ORDER BY task_id", (run_id,))


def ti_key(run_id: str) -> str:
    """The WHERE clause of task_1 of a filled run (the filler puts run r in dag_{r % 5 + 1})."""
    number = int(run_id.split("__")[1])
    return f"dag_id = 'dag_{number % 5 + 1}' AND task_id = 'task_1' AND run_id = '{run_id}' AND map_index = -1"


def test_introspection_maps_airflow_columns(mysql_airflow3_source: str) -> None:
    with open_source(make_url(mysql_airflow3_source)) as source:
        assert isinstance(source.inner, MySQLSource)  # inside the translation boundary
        tables = source.list_tables()
        assert {"dag", "dag_run", "task_instance", "log", "alembic_version"} <= set(tables)
        ti = source.describe("task_instance")
        kinds = {column.name: column.logical_type for column in ti.columns}
        assert kinds["id"] is LogicalType.TEXT  # MariaDB's native uuid
        assert kinds["updated_at"] is LogicalType.TIMESTAMP_TZ
        assert kinds["executor_config"] is LogicalType.BYTES
        assert kinds["next_kwargs"] is LogicalType.JSON  # LONGTEXT + CHECK (json_valid(...)) on MariaDB
        assert kinds["duration"] is LogicalType.DOUBLE
        assert kinds["map_index"] is LogicalType.INTEGER
        assert ti.primary_key == ("id",)
        assert ("dag_id", "task_id", "run_id", "map_index") in ti.unique_keys
        assert ti.column("state").nullable and not ti.column("pool").nullable
        assert source.describe("dag").column("is_paused").logical_type is LogicalType.BOOLEAN
        history = source.describe("task_instance_history")
        assert history.column("trigger_timeout").logical_type is LogicalType.TIMESTAMP  # a DATETIME column
        assert source.describe("dag_tag").primary_key == ("name", "dag_id")


def test_every_url_form_airflow_writes_opens_the_same_database(mysql_airflow3_source: str) -> None:
    database = database_of(mysql_airflow3_source)
    identities = set()
    for scheme in ("mysql", "mysql+mysqldb", "mysql+pymysql", "mariadb", "mariadb+pymysql"):
        with open_source(make_url(f"{scheme}://root@127.0.0.1:3306/{database}?charset=utf8mb4")) as source:
            assert "task_instance" in source.list_tables()
            identities.add(source.identity())
    assert identities == {f"mysql://127.0.0.1:3306/{database}"}


def test_bad_credentials_fail_without_showing_the_password(mysql_airflow3_source: str) -> None:
    url = make_url(f"mysql://root:s3cr3t-pw@127.0.0.1:3306/{database_of(mysql_airflow3_source)}")
    with pytest.raises(SourceError) as caught:
        MySQLSource(url)
    assert "s3cr3t-pw" not in str(caught.value)
    assert "Access denied" in str(caught.value) and "credentials" in str(caught.value)


def test_sync_mirrors_every_row_then_follows_updates_inserts_and_cascaded_deletes(
    mysql_airflow3_source: str, duckdb_destination: str
) -> None:
    source, destination = mysql_airflow3_source, duckdb_destination
    first = sync(source, destination)
    assert first.ok, [t.error for t in first.tables]
    strategies = {t.table: t.strategy for t in first.tables}
    assert strategies["task_instance"] == "incremental" and strategies["dag_run"] == "incremental"
    assert strategies["log"] == "append"
    counts = {table: assert_mirrored(source, destination, table) for table in KEYS}
    assert counts["task_instance"] == 200 and counts["dag_run"] == 50 and counts["log"] == 30

    with mysql_connect(database_of(source)) as connection, connection.cursor() as cursor:
        # A retry: new UUID, new state, unicode, JSON, bytes, microsecond timestamps stamped now.
        cursor.execute(
            "UPDATE task_instance SET state = 'failed', try_number = try_number + 1, id = UUID(), "
            "hostname = 'wörker-2 ✓', next_kwargs = '{\"retry\": [1, 2], \"ü\": null}', executor_config = X'00ff10', "
            "end_date = UTC_TIMESTAMP(6), updated_at = UTC_TIMESTAMP(6) "
            "WHERE run_id IN ('scheduled__1', 'scheduled__2')"
        )
        cursor.execute("UPDATE task_instance SET queue = '', pid = NULL, executor_config = X'', "
                       "updated_at = UTC_TIMESTAMP(6) WHERE run_id = 'scheduled__4'")
        cursor.execute("UPDATE dag SET is_paused = NOT is_paused WHERE dag_id = 'dag_2'")
        cursor.execute("DELETE FROM dag_run WHERE run_id = 'scheduled__3'")  # task instances cascade
        cursor.execute("INSERT INTO log (dttm, event, extra) VALUES (UTC_TIMESTAMP(6), 'cli_task_run', NULL)")
        connection.commit()
    fill_airflow3_mysql(source, runs=5, first_run=1001)  # five new runs with their task instances

    second = sync(source, destination)
    assert second.ok, [t.error for t in second.tables]
    by_table = {t.table: t for t in second.tables}
    # Incremental: the changed and new rows, not the whole table.
    assert 4 * 2 + 4 + 5 * 4 <= by_table["task_instance"].rows_read < 200
    counts = {table: assert_mirrored(source, destination, table) for table in KEYS}
    assert counts["task_instance"] == 200 - 4 + 20 and counts["dag_run"] == 50 - 1 + 5 and counts["log"] == 31
    deleted = task_instance_rows(destination, "scheduled__3")
    assert len(deleted) == 4 and all(row[2] is not None for row in deleted)
    (run,) = mirror_query(destination, f'SELECT "_cdc_deleted_at" FROM "{SCHEMA}".dag_run WHERE run_id = %s',
                          ("scheduled__3",))
    assert run[0] is not None


def test_open_writer_holds_the_watermark_until_it_commits(mysql_airflow3_source: str,
                                                          duckdb_destination: str) -> None:
    source, destination = mysql_airflow3_source, duckdb_destination
    assert sync(source, destination, lookback_seconds=0).ok
    database = database_of(source)
    writer = mysql_connect(database)  # autocommit off, like Airflow's sessions
    try:
        with writer.cursor() as cursor:
            # By the full natural key, so only that row is locked (as Airflow does).
            cursor.execute("UPDATE task_instance SET state = 'up_for_retry', updated_at = UTC_TIMESTAMP(6) "
                           f"WHERE {ti_key('scheduled__5')}")
            cursor.execute(f"SELECT updated_at FROM task_instance WHERE {ti_key('scheduled__5')}")
            late_stamp = cursor.fetchone()[0].replace(tzinfo=UTC)
        time.sleep(1.1)  # trx_started has second precision
        # Another session stamps and commits a newer row, which this cycle reads.
        mysql_execute("UPDATE task_instance SET state = 'running', updated_at = UTC_TIMESTAMP(6) "
                      f"WHERE {ti_key('scheduled__6')}", database=database)

        with MySQLSource(make_url(source)) as mysql_source, mysql_source.snapshot() as snapshot:
            horizon = snapshot.horizon
        assert horizon.sees_open_writes
        assert horizon.oldest_open_write_at is not None and horizon.oldest_open_write_at <= late_stamp
        assert horizon.safe_until < late_stamp

        held = sync(source, destination, lookback_seconds=0)
        assert held.ok
        ti = {t.table: t for t in held.tables}["task_instance"]
        # The newer row is mirrored, yet the watermark stays before the uncommitted (older) stamp:
        # advancing it to the newest row read, as cursor-only tools do, would skip the late commit for good.
        assert task_instance_rows(destination, "scheduled__6")[0][1] == "running"
        assert task_instance_rows(destination, "scheduled__5")[0][1] == "success"
        assert datetime.fromisoformat(ti.high_water_mark) < late_stamp
        writer.commit()
    finally:
        writer.close()

    after = sync(source, destination, lookback_seconds=0)
    assert after.ok
    assert task_instance_rows(destination, "scheduled__5")[0][1] == "up_for_retry"
    assert assert_mirrored(source, destination, "task_instance") == 200


def test_without_process_privilege_the_horizon_admits_it_cannot_see(mysql_airflow3_source: str,
                                                                     duckdb_destination: str) -> None:
    database = database_of(mysql_airflow3_source)
    user, password = f"cdc_ro_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex[:8]}"
    mysql_execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    try:
        mysql_execute(f"GRANT SELECT ON `{database}`.* TO '{user}'@'%'")
        url = f"mysql://{user}:{password}@127.0.0.1:3306/{database}"
        with MySQLSource(make_url(url)) as source, source.snapshot() as snapshot:
            assert snapshot.horizon.sees_open_writes is False
            assert snapshot.horizon.writes_were_open
        report = sync(url, duckdb_destination)
        assert report.ok
        assert any("PROCESS" in warning for warning in report.warnings)
        assert password not in repr(report)
        assert assert_mirrored(mysql_airflow3_source, duckdb_destination, "dag_run") == 50
        mysql_execute(f"GRANT PROCESS ON *.* TO '{user}'@'%'")
        with MySQLSource(make_url(url)) as source, source.snapshot() as snapshot:
            assert snapshot.horizon.sees_open_writes is True
    finally:
        mysql_execute(f"DROP USER IF EXISTS '{user}'@'%'")


@pytest.mark.slow
def test_a_large_table_streams_in_bounded_batches(mysql_airflow3_source: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows arrive in batches of the unbuffered cursor's size, never as one whole table (the read's speed is
    measured by the benchmark, not here)."""
    import cdc_sync.sources.mysql as mysql_source

    monkeypatch.setattr(mysql_source, "BATCH_ROWS", 5_000)
    fill_airflow3_mysql(mysql_airflow3_source, runs=4_950, tasks_per_run=4, first_run=1001)
    with MySQLSource(make_url(mysql_airflow3_source)) as source:
        table = source.describe("task_instance")
        with source.snapshot() as snapshot:
            batches = list(snapshot.read_rows(table))
            assert snapshot.count_rows(table) == 20_000
    assert sum(batch.num_rows for batch in batches) == 20_000
    assert len(batches) >= 4 and max(batch.num_rows for batch in batches) <= 5_000


def test_reset_check_looks_the_row_at_the_watermark_up_by_key(mysql_airflow3_source: str, duckdb_destination: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A cycle that reads nothing new checks the source still reaches each watermark with a keyed lookup of the
    row that reached it, not a table scan; a gone row falls back to the scan."""
    source, destination = mysql_airflow3_source, duckdb_destination
    assert sync(source, destination).ok
    # log's first read is confirmed by the next cycle that comes after INNODB_TRX's lag (a cache up to 0.1 s old,
    # cdc_sync.sources.mysql.INNODB_TRX_LAG): that cycle re-reads it, later ones read nothing.
    time.sleep(INNODB_TRX_LAG.total_seconds() + 0.1)
    assert sync(source, destination).ok
    probes = record_reset_probes(monkeypatch, MySQLSnapshot)
    again = sync(source, destination)
    assert again.ok and all(t.rows_written == 0 for t in again.tables)
    # log reads by id, so a cycle without new rows reads none and asks. (Timestamp tables re-read the lookback
    # overlap, whose rows may reach the mark themselves: then nothing is asked.)
    assert "log:True" in probes.looked_up and probes.scanned == [], probes
    assert all(entry.endswith(":True") for entry in probes.looked_up), probes
    with mysql_connect(database_of(source)) as connection, connection.cursor() as cursor:
        cursor.execute("DELETE FROM log ORDER BY id DESC LIMIT 1")  # the row at log's id watermark
        connection.commit()
    probes.clear()
    after = sync(source, destination)
    assert after.ok
    assert "log:False" in probes.looked_up and "log" in probes.scanned


def test_a_writer_the_lagging_innodb_trx_view_may_miss_is_never_taken_as_finished(mysql_airflow3_source: str) -> None:
    """INNODB_TRX is a cache InnoDB refreshes at most every 0.1 s: a transaction that took an id just after a refresh
    is missing from it. The horizon must then not claim to know the writers after its view's moment, or an append
    watermark passes the open writer's id (lost for good once it commits)."""
    from cdc_sync.sources import open_source
    from cdc_sync.urls import make_url

    with open_source(make_url(mysql_airflow3_source)) as source, \
            mysql_connect(database_of(mysql_airflow3_source)) as writer:
        with source.snapshot():  # the horizon query refreshes the cache now
            pass
        with writer.cursor() as cursor:
            cursor.execute("SELECT UTC_TIMESTAMP(6)")
            (began,) = cursor.fetchone()
            cursor.execute("INSERT INTO log (dttm, event) VALUES (UTC_TIMESTAMP(6), 'open writer')")
        with source.snapshot() as snapshot:  # well within 0.1 s: the cache may not show the writer
            horizon = snapshot.horizon
        writer.rollback()
    began = began.replace(tzinfo=horizon.read_started_at.tzinfo)
    assert horizon.oldest_open_write_at is not None or horizon.writers_seen_until <= began, horizon
