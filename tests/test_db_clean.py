"""``airflow db clean`` (the real command) purges old rows from the source; the mirror keeps them as soft-deleted
history by default, and drops them with ``deletes="hard"``. Airflow 3.3 and 2.11, on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

import cdc_sync
from tests.airflow_schema import AIRFLOW2_BIN, airflow_db_clean
from tests.mirror_check import assert_mirrored, mirror_query, source_columns

SCHEMA = "airflow"
# Filled runs start at 2026-01-01 00:00 + r minutes: this purges runs 1..29 (the latest run of each DAG, which
# db clean keeps, is younger) and their task instances; jobs, logs and import errors are recent and stay.
CLEAN_BEFORE = "2026-01-01T00:30:00+00:00"
CLEANED = ("dag_run", "task_instance")
KEYS = {"dag_run": ["dag_id", "run_id"], "task_instance": ["dag_id", "task_id", "run_id", "map_index"],
        "job": ["id"], "log": ["id"], "dag": ["dag_id"]}


def _source_keys(source: str, table: str) -> set[tuple]:
    columns = ", ".join(f'"{name}"' for name in KEYS[table])
    import psycopg

    with psycopg.connect(source) as connection:
        return set(connection.execute(f'SELECT {columns} FROM "{table}"').fetchall())


def _mirror(destination: str, table: str, keys: dict[str, list[str]] = KEYS) -> dict[tuple, tuple]:
    """Key → (every mirrored column except the bookkeeping ones, _cdc_deleted_at)."""
    rows = mirror_query(destination, f'SELECT * FROM "{SCHEMA}"."{table}"')
    names = [row[0] for row in mirror_query(
        destination, "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position", (SCHEMA, table))]
    key_at = [names.index(name) for name in keys[table]]
    deleted_at, synced_at = names.index("_cdc_deleted_at"), names.index("_cdc_synced_at")
    return {tuple(row[i] for i in key_at): (tuple(v for i, v in enumerate(row) if i not in (deleted_at, synced_at)),
                                            row[deleted_at]) for row in rows}


def assert_purged_rows_kept_or_removed(soft_report, soft: str, hard: str, before: dict, keys_before: dict,
                                       purged: dict, keys: dict[str, list[str]]) -> None:
    """The soft mirror keeps every purged row, marked deleted with its data; the hard mirror lost exactly them."""
    by_table = {t.table: t for t in soft_report.tables}
    for table in before:
        assert by_table[table].rows_deleted == len(purged[table])
        after = _mirror(soft, table, keys)
        assert set(after) == set(before[table]), "soft deletes keep every row"
        for key in purged[table]:
            columns, deleted_at = after[key]
            assert deleted_at is not None, f"{table}{key} purged on the source but live in the mirror"
            assert columns == before[table][key][0], "the purged row keeps its data as history"
        assert all(after[key][1] is None for key in set(after) - purged[table])
        hard_rows = _mirror(hard, table, keys)
        assert set(hard_rows) == keys_before[table] - purged[table], "hard deletes remove exactly the purged rows"
        assert all(deleted_at is None for _, deleted_at in hard_rows.values())


@pytest.mark.slow
@pytest.mark.parametrize("version", ["3", "2"])
def test_db_clean_soft_deletes_by_default_and_hard_deletes_on_request(
    version: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = request.getfixturevalue("airflow3_source" if version == "3" else "pg_airflow2_source")
    airflow_bin = None if version == "3" else str(AIRFLOW2_BIN)
    driver = "postgresql+psycopg://" if version == "3" else "postgresql+psycopg2://"
    soft, hard = f"duckdb:///{tmp_path / 'soft.duckdb'}", f"duckdb:///{tmp_path / 'hard.duckdb'}"
    options = {"schema": SCHEMA, "additional_tables": ["log"]}
    assert cdc_sync.sync(source, soft, **options).ok
    assert cdc_sync.sync(source, hard, deletes="hard", **options).ok
    before = {table: _mirror(soft, table) for table in CLEANED}
    keys_before = {table: _source_keys(source, table) for table in KEYS}

    airflow_db_clean(source.replace("postgresql://", driver), CLEAN_BEFORE, airflow_bin=airflow_bin)

    purged = {table: keys_before[table] - _source_keys(source, table) for table in KEYS}
    assert len(purged["dag_run"]) == 29 and len(purged["task_instance"]) == 116, "db clean purged the old runs"
    assert not purged["job"] and not purged["log"] and not purged["dag"]

    soft_report = cdc_sync.sync(source, soft, **options)
    hard_report = cdc_sync.sync(source, hard, deletes="hard", **options)
    assert soft_report.ok and hard_report.ok
    for destination in (soft, hard):
        for table in KEYS:
            exclude = tuple(c for c in source_columns(source, table) if c == "password")
            assert_mirrored(source, destination, SCHEMA, table, KEYS[table], exclude=exclude)
    assert_purged_rows_kept_or_removed(soft_report, soft, hard, before, keys_before, purged, KEYS)
