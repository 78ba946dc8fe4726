"""``airflow db clean`` (the real Airflow 2.11 command, from the 2.11 environment) on MariaDB and SQLite sources:
the mirror keeps purged rows as soft-deleted history by default, with their data intact, and drops them with
``deletes="hard"``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import cdc_sync
from tests.airflow_schema import AIRFLOW2_BIN, airflow_db_clean, airflow_db_clean_mysql
from tests.test_airflow2_schemas import KEYS, SCHEMA, _sqlite_rows, assert_mirrored
from tests.test_db_clean import CLEAN_BEFORE, _mirror, assert_purged_rows_kept_or_removed
from tests.test_source_mysql import source_rows as mysql_source_rows

# The 2.11 fills date run r at 2026-01-01 00:00 + r minutes (runs 1..40, run r in dag_{r % 5 + 1}), its four task
# instances from the same minute, and a task_fail row for the last task of every third run. CLEAN_BEFORE (00:30)
# purges runs 1..29, their 116 task instances and the 9 failures of runs 3..27, while the latest run of each DAG
# (36..40), which db clean keeps anyway, is younger. Jobs, logs, DAGs and import errors are stamped hours before
# now and stay; FAB tables are not db clean's. SQLite holds the 2.11 instants as naive UTC text, so the text
# comparison there purges the same rows as MariaDB.
RUNS_PURGED = set(range(1, 30))
EXPECTED = {"dag_run": len(RUNS_PURGED), "task_instance": 4 * len(RUNS_PURGED),
            "task_fail": len([r for r in RUNS_PURGED if r % 3 == 0])}
CLEANED = tuple(EXPECTED)


def _source_rows(engine: str, source: str, table: str) -> dict[tuple, dict[str, Any]]:
    """Key → row of the source table, read with the source's own driver."""
    return (mysql_source_rows if engine == "mysql" else _sqlite_rows)(source, table, KEYS[table])[1]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["mysql", "sqlite"])
def test_airflow2_db_clean_soft_deletes_by_default_and_hard_deletes_on_request(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = request.getfixturevalue(f"{engine}_airflow2_source")
    soft, hard = f"duckdb:///{tmp_path / 'soft.duckdb'}", f"duckdb:///{tmp_path / 'hard.duckdb'}"
    options = {"schema": SCHEMA, "additional_tables": ["log"]}
    assert cdc_sync.sync(source, soft, **options).ok
    assert cdc_sync.sync(source, hard, deletes="hard", **options).ok
    before = {table: _mirror(soft, table, KEYS) for table in CLEANED}
    rows_before = {table: _source_rows(engine, source, table) for table in KEYS}
    keys_before = {table: set(rows) for table, rows in rows_before.items()}
    assert all(set(before[table]) == keys_before[table] for table in CLEANED), "the first cycle mirrored all"

    if engine == "mysql":
        airflow_db_clean_mysql(source, CLEAN_BEFORE, airflow_bin=str(AIRFLOW2_BIN))
    else:
        airflow_db_clean(source, CLEAN_BEFORE, airflow_bin=str(AIRFLOW2_BIN))

    purged = {table: keys_before[table] - set(_source_rows(engine, source, table)) for table in KEYS}
    assert {table: len(purged[table]) for table in CLEANED} == EXPECTED, "db clean purged the old runs"
    assert all(not purged[table] for table in KEYS if table not in CLEANED)
    purged_runs = {table: {int(rows_before[table][key]["run_id"].split("__")[1]) for key in purged[table]}
                   for table in CLEANED}
    assert purged_runs == {"dag_run": RUNS_PURGED, "task_instance": RUNS_PURGED,
                           "task_fail": {r for r in RUNS_PURGED if r % 3 == 0}}

    soft_report = cdc_sync.sync(source, soft, **options)
    hard_report = cdc_sync.sync(source, hard, deletes="hard", **options)
    assert soft_report.ok and hard_report.ok
    for destination in (soft, hard):
        for table in KEYS:
            exclude = ("password",) if table == "ab_user" else ()
            assert assert_mirrored(engine, source, destination, table, exclude=exclude) > 0
    assert_purged_rows_kept_or_removed(soft_report, soft, hard, before, keys_before, purged, KEYS)
