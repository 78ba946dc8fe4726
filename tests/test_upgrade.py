"""Upgrading Airflow under a running mirror: a 2.11 database mirrored, migrated in place to 3.3 by Airflow's own
``airflow db migrate``, then synced again. The warehouse follows without a manual step and loses nothing."""

from __future__ import annotations

import json
import pickle

import pytest

import cdc_sync
from tests.airflow_schema import airflow_migrate, pg_execute
from tests.mirror_check import AIRFLOW_KEYS, assert_mirrored, mirror_query, source_columns

SCHEMA = "airflow"
KEYS = {
    **AIRFLOW_KEYS,
    "ab_user": ["id"],
    "ab_role": ["id"],
    "ab_permission": ["id"],
}


def _columns(destination: str, table: str) -> list[str]:
    return [row[0] for row in mirror_query(
        destination, "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position", (SCHEMA, table))]


def _rows(destination: str, table: str, columns: list[str], order: str) -> list[tuple]:
    select = ", ".join(f'"{c}"' for c in columns)
    return mirror_query(destination, f'SELECT {select} FROM "{SCHEMA}"."{table}" ORDER BY {order}')


@pytest.mark.slow
def test_upgrade_from_airflow2_to_3_in_place(pg_airflow2_source: str, duckdb_destination: str) -> None:
    source, destination = pg_airflow2_source, duckdb_destination
    options = {"schema": SCHEMA, "additional_tables": ["log"]}
    assert cdc_sync.sync(source, destination, **options).ok
    pg_execute("DELETE FROM task_fail WHERE run_id = 'scheduled__3'", source.rsplit("/", 1)[1])
    assert cdc_sync.sync(source, destination, **options).ok  # one soft-deleted task_fail row: history to keep
    old_runs = _rows(destination, "dag_run", ["dag_id", "run_id", "execution_date", "conf"], "run_id")
    old_fails = _rows(destination, "task_fail", _columns(destination, "task_fail"), "id")
    assert len(old_fails) == 13 and sum(row[-1] is not None for row in old_fails) == 1

    # .venv's Airflow 3.3, through psycopg2 as Airflow defaults to (3.3.2's callback migration fails on psycopg 3).
    airflow_migrate(source.replace("postgresql://", "postgresql+psycopg2://"))

    assert "logical_date" in source_columns(source, "dag_run") and "task_fail" not in _source_tables(source)
    report = cdc_sync.sync(source, destination, **options)
    assert report.ok, report.failed
    warnings = " ".join([*report.warnings, *(w for table in report.tables for w in table.warnings)])
    assert "task_fail" in warnings and "kept as history" in warnings, report.warnings
    assert "conf_airflow2" in warnings and "trigger_timeout_airflow2" in warnings

    # Every live source row equals its mirror in every column, the columns new in 3.x included.
    for table, key in KEYS.items():
        exclude = ("password",) if table == "ab_user" else ()
        compared = assert_mirrored(source, destination, SCHEMA, table, key, exclude=exclude)
        assert compared > 0 or table == "import_error", table  # the 3.x migration empties import_error
    assert {"logical_date", "run_after"} <= set(_columns(destination, "dag_run"))
    assert "id" in _columns(destination, "task_instance")
    ids = mirror_query(destination, f'SELECT count(DISTINCT id), count(*) FROM "{SCHEMA}".task_instance')
    assert ids == [(160, 160)], "the new UUID id is filled for every task instance"
    keys = {w.table_name: w.merge_key for w in cdc_sync.status(destination, SCHEMA)}
    assert keys["task_instance"] == "dag_id,task_id,run_id,map_index", "the merge key stays the natural key"

    # Nothing is lost: columns 3.x dropped keep what was synced, and task_fail's mirror stays whole.
    # dag_run.conf turned from pickled bytes into JSON: the pickles stay in conf_airflow2, the JSON fills conf.
    assert _rows(destination, "dag_run", ["dag_id", "run_id", "execution_date", "conf_airflow2"], "run_id") == old_runs
    confs = _rows(destination, "dag_run", ["run_id", "conf_airflow2", "conf"], "run_id")
    assert all(json.loads(new) == pickle.loads(old) for _, old, new in confs if old is not None)
    assert _rows(destination, "task_fail", _columns(destination, "task_fail"), "id") == old_fails
    assert "task_fail" not in {w.table_name for w in cdc_sync.status(destination, SCHEMA) if w.last_error}


def _source_tables(source: str) -> set[str]:
    import psycopg

    with psycopg.connect(source) as connection:
        return {row[0] for row in connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()}
