"""Airflow 2.11 schemas (each from the 2.11 environment's own ``airflow db migrate``) on PostgreSQL, MariaDB and
SQLite, filled with 2.x-shaped rows and mirrored into DuckDB exactly, column by column."""

from __future__ import annotations

import pickle
import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest

import cdc_sync
from cdc_sync.config import build_config
from cdc_sync.plan import plan_table
from cdc_sync.sources import open_source
from cdc_sync.urls import make_url
from tests.mirror_check import assert_mirrored as assert_pg_mirrored
from tests.mirror_check import mirror_query, mirror_rows, normalize
from tests.test_source_mysql import source_rows as mysql_source_rows

SCHEMA = "airflow"
KEYS = {
    "ab_permission": ["id"],
    "ab_role": ["id"],
    "ab_user": ["id"],
    "dag": ["dag_id"],
    "dag_run": ["dag_id", "run_id"],
    "dag_tag": ["name", "dag_id"],
    "import_error": ["id"],
    "job": ["id"],
    "task_fail": ["id"],
    "task_instance": ["dag_id", "task_id", "run_id", "map_index"],
    "log": ["id"],
}
SECRET = "secret-hash"


def sync(source: str, destination: str, **options: Any):
    return cdc_sync.sync(source, destination, schema=SCHEMA, additional_tables=["log"], **options)


def _sqlite_expected(declared: str, value: Any) -> Any:
    """What the mirror must hold for a stored SQLite value, decided from the declared type independently."""
    if value is None:
        return None
    if declared == "TIMESTAMP":  # Airflow's UtcDateTime: naive UTC text
        instant = datetime.fromisoformat(value)
        return (instant if instant.tzinfo else instant.replace(tzinfo=UTC)).astimezone(UTC)
    if declared == "DATETIME":  # FAB's naive wall-clock time
        return datetime.fromisoformat(value)
    if declared == "BOOLEAN":
        return bool(value)
    return normalize(value)


def _sqlite_rows(url: str, table: str, key: list[str]) -> tuple[list[str], dict[tuple, dict[str, Any]]]:
    with sqlite3.connect(make_url(url).database) as connection:
        described = connection.execute(f'SELECT name, type FROM pragma_table_info("{table}")').fetchall()
        rows = connection.execute(f'SELECT {", ".join(n for n, _ in described)} FROM "{table}"').fetchall()
    expected = {}
    for row in rows:
        pairs = zip(described, row, strict=True)
        record = {name: _sqlite_expected(declared, value) for (name, declared), value in pairs}
        expected[tuple(record[k] for k in key)] = record
    return [name for name, _ in described], expected


def assert_mirrored(engine: str, source: str, destination: str, table: str, exclude: tuple[str, ...] = ()) -> int:
    """Every live source row equals its mirror copy in every column (except ``exclude``); returns the count."""
    key = KEYS[table]
    if engine == "postgresql":
        return assert_pg_mirrored(source, destination, SCHEMA, table, key, exclude=exclude)
    columns, expected = (mysql_source_rows if engine == "mysql" else _sqlite_rows)(source, table, key)
    columns = [c for c in columns if c not in exclude]
    actual = mirror_rows(destination, SCHEMA, table, columns, key)
    assert set(actual) == set(expected), f"{table}: {sorted(set(expected) ^ set(actual))[:3]}"
    for identity, row in expected.items():
        for column in columns:
            value, mirrored = row[column], actual[identity][column]
            assert mirrored == value and type(mirrored) is type(value), (
                f"{table}{identity}.{column}: source {value!r} != mirror {mirrored!r}"
            )
    return len(expected)


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def airflow2_source(request: pytest.FixtureRequest) -> tuple[str, str]:
    fixture = {"postgresql": "pg_airflow2_source", "mysql": "mysql_airflow2_source",
               "sqlite": "sqlite_airflow2_source"}[request.param]
    return request.param, request.getfixturevalue(fixture)


def _mirror_columns(destination: str, table: str) -> set[str]:
    return {row[0] for row in mirror_query(
        destination, "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        (SCHEMA, table))}


def _source_execute(engine: str, url: str, sql: str) -> None:
    """Run a statement on the source with its own driver (identifiers are plain Airflow names)."""
    if engine == "postgresql":
        from tests.airflow_schema import pg_execute

        pg_execute(sql, make_url(url).database)
    elif engine == "mysql":
        from tests.airflow_schema import mysql_execute

        mysql_execute(sql.replace('"', "`"), database=make_url(url).database)
    else:
        with sqlite3.connect(make_url(url).database) as connection:
            connection.execute(sql)


def test_airflow2_schema_mirrored_exactly(airflow2_source: tuple[str, str], duckdb_destination: str) -> None:
    engine, source = airflow2_source
    report = sync(source, duckdb_destination)
    assert report.ok, report.failed
    assert not [w for w in report.warnings if "does not exist" in w], "2.11 has every default table"
    compared = {table: assert_mirrored(engine, source, duckdb_destination, table,
                                       exclude=("password",) if table == "ab_user" else ())
                for table in KEYS}
    assert compared["task_instance"] == 160 and compared["dag_run"] == 40 and compared["task_fail"] == 13
    assert compared["ab_user"] == 2 and compared["ab_role"] == 2 and compared["job"] == 20

    # The password hash never reaches the warehouse, not even as a column.
    assert "password" not in _mirror_columns(duckdb_destination, "ab_user")
    assert "email" in _mirror_columns(duckdb_destination, "ab_user")
    dump = mirror_query(duckdb_destination, f'SELECT * FROM "{SCHEMA}".ab_user')
    assert not any(SECRET in str(value) for row in dump for value in row)

    # Pickled BLOBs come back as the same bytes, and still unpickle.
    confs = mirror_query(duckdb_destination, f'SELECT run_id, conf FROM "{SCHEMA}".dag_run WHERE conf IS NOT NULL')
    assert len(confs) == 30 and all(isinstance(conf, bytes) for _, conf in confs)
    assert all(pickle.loads(conf)["run"] == int(run_id.split("__")[1]) for run_id, conf in confs)
    configs = mirror_query(duckdb_destination, f'SELECT task_id, executor_config FROM "{SCHEMA}".task_instance '
                                               "WHERE executor_config IS NOT NULL")
    assert configs and all(pickle.loads(blob)["t"] == int(task.split("_")[1]) for task, blob in configs)

    # A second cycle follows 2.x-style changes: a run re-stamped, a new failure, a deleted DAG's run, a heartbeat.
    _source_execute(engine, source, "UPDATE dag_run SET state = 'failed', updated_at = CURRENT_TIMESTAMP "
                                    "WHERE run_id = 'scheduled__5'")
    _source_execute(engine, source, "INSERT INTO task_fail (task_id, dag_id, run_id, map_index, duration) "
                                    "VALUES ('task_2', 'dag_1', 'scheduled__5', -1, 3)")
    _source_execute(engine, source, "DELETE FROM task_instance WHERE run_id = 'scheduled__7'")
    _source_execute(engine, source, "DELETE FROM dag_run WHERE run_id = 'scheduled__7'")
    _source_execute(engine, source, "UPDATE job SET state = 'failed' WHERE id = 3")
    report = sync(source, duckdb_destination, lookback_seconds=3600)
    assert report.ok, report.failed
    for table in KEYS:
        assert_mirrored(engine, source, duckdb_destination, table, exclude=("password",) if table == "ab_user" else ())
    gone = mirror_query(duckdb_destination, f'SELECT count(*) FROM "{SCHEMA}".task_instance '
                                            "WHERE run_id = 'scheduled__7' AND _cdc_deleted_at IS NOT NULL")
    assert gone == [(4,)], "rows deleted on the source are kept as soft-deleted history"


def test_catalog_matches_the_real_airflow2_schema(pg_airflow2_source: str) -> None:
    """Cursors, natural keys, strategies and sensitive columns the catalog gives for the real 2.11 tables."""
    config = build_config(source=pg_airflow2_source, destination="duckdb:///unused.duckdb")
    with open_source(make_url(pg_airflow2_source)) as source:
        plans = {name: plan_table(source.describe(name), config, row_versions=source.has_row_versions)
                 for name in ("dag_run", "task_instance", "task_fail", "job", "dag", "log", "ab_user",
                              "ab_register_user", "connection", "variable", "session", "trigger", "xcom",
                              "dataset_event", "task_instance_history")}
    assert (plans["dag_run"].strategy, plans["dag_run"].cursor) == ("incremental", "updated_at")
    assert plans["dag_run"].merge_key == ("dag_id", "run_id")
    assert plans["dag_run"].table.column("conf").logical_type.value == "bytes"
    assert (plans["task_instance"].strategy, plans["task_instance"].cursor) == ("incremental", "updated_at")
    assert plans["task_instance"].merge_key == ("dag_id", "task_id", "run_id", "map_index")
    assert plans["task_instance"].table.column("executor_config").logical_type.value == "bytes"
    assert (plans["task_fail"].strategy, plans["task_fail"].cursor) == ("append", "id")
    assert (plans["log"].strategy, plans["log"].cursor) == ("append", "id")
    assert (plans["dataset_event"].strategy, plans["dataset_event"].cursor) == ("append", "id")
    assert (plans["task_instance_history"].strategy, plans["task_instance_history"].cursor) == (
        "incremental", "updated_at")
    # No reliable cursor: PostgreSQL's row-version detector, never a timestamp that heartbeats leave alone.
    assert plans["job"].strategy == plans["dag"].strategy == plans["ab_user"].strategy == "row_version"
    assert plans["xcom"].merge_key == ("dag_run_id", "task_id", "map_index", "key")
    excluded = {name: set(plan.excluded_columns) for name, plan in plans.items() if plan.excluded_columns}
    assert excluded == {
        "ab_user": {"password"},
        "ab_register_user": {"password", "registration_hash"},
        "connection": {"password", "extra"},
        "variable": {"val"},
        "session": {"session_id", "data"},
        "trigger": {"kwargs"},
    }
