"""``airflow db clean`` (the real Airflow 3.3 command) on MariaDB and SQLite sources: the mirror keeps purged rows
as soft-deleted history by default, with their data intact, and drops them with ``deletes="hard"``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import cdc_sync
from cdc_sync.urls import make_url
from tests.airflow_schema import airflow_db_clean, airflow_db_clean_mysql, mysql_connect
from tests.test_db_clean import CLEAN_BEFORE, _mirror, assert_purged_rows_kept_or_removed
from tests.test_source_mysql import KEYS
from tests.test_source_mysql import assert_mirrored as assert_mirrored_mysql
from tests.test_source_sqlite import assert_mirrored as assert_mirrored_sqlite

SCHEMA = "airflow"
CLEANED = ("dag_run", "task_instance")
# The fills date run r at 2026-01-01 00:00 + r minutes (runs 1..50, run r in dag_{r % 5 + 1}) and its task
# instances a few seconds later; CLEAN_BEFORE (00:30) purges runs 1..29 and their 116 task instances, while the
# latest run of each DAG (46..50), which db clean keeps anyway, is younger. Jobs, logs, DAGs and import errors are
# stamped hours before now and stay. On SQLite, timestamps are text compared as text: the filler writes every
# third run's start_date with a +02:00 offset ("2026-01-01 02:03:00+02:00" for run 3), which sorts after the
# bound, so Airflow purges only the 20 other runs there, yet all 116 task instances (their own start_date is
# naive UTC text).
EXPECTED = {"mysql": {"dag_run": 29, "task_instance": 116}, "sqlite": {"dag_run": 20, "task_instance": 116}}


def _source_keys(engine: str, source: str, table: str) -> set[tuple]:
    quote = "`" if engine == "mysql" else '"'
    columns = ", ".join(f"{quote}{name}{quote}" for name in KEYS[table])
    sql = f"SELECT {columns} FROM {quote}{table}{quote}"
    if engine == "mysql":
        with mysql_connect(make_url(source).database) as connection, connection.cursor() as cursor:
            cursor.execute(sql)
            return set(cursor.fetchall())
    connection = sqlite3.connect(make_url(source).database)
    try:
        return set(connection.execute(sql).fetchall())
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["mysql", "sqlite"])
def test_db_clean_soft_deletes_by_default_and_hard_deletes_on_request(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = request.getfixturevalue(f"{engine}_airflow3_source")
    assert_mirrored = assert_mirrored_mysql if engine == "mysql" else assert_mirrored_sqlite
    soft, hard = f"duckdb:///{tmp_path / 'soft.duckdb'}", f"duckdb:///{tmp_path / 'hard.duckdb'}"
    options = {"schema": SCHEMA, "additional_tables": ["log"]}
    assert cdc_sync.sync(source, soft, **options).ok
    assert cdc_sync.sync(source, hard, deletes="hard", **options).ok
    before = {table: _mirror(soft, table, KEYS) for table in CLEANED}
    keys_before = {table: _source_keys(engine, source, table) for table in KEYS}
    assert all(len(before[table]) == len(keys_before[table]) for table in CLEANED)

    if engine == "mysql":
        airflow_db_clean_mysql(source, CLEAN_BEFORE)
    else:
        airflow_db_clean(source, CLEAN_BEFORE)

    purged = {table: keys_before[table] - _source_keys(engine, source, table) for table in KEYS}
    assert {table: len(purged[table]) for table in CLEANED} == EXPECTED[engine], "db clean purged the old runs"
    assert all(not purged[table] for table in KEYS if table not in CLEANED)
    assert {int(run_id.split("__")[1]) for _, _, run_id, _ in purged["task_instance"]} == set(range(1, 30))

    soft_report = cdc_sync.sync(source, soft, **options)
    hard_report = cdc_sync.sync(source, hard, deletes="hard", **options)
    assert soft_report.ok and hard_report.ok
    for destination in (soft, hard):
        for table in KEYS:
            assert assert_mirrored(source, destination, table) > 0
    assert_purged_rows_kept_or_removed(soft_report, soft, hard, before, keys_before, purged, KEYS)
