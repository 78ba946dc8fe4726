"""``cdc-sync verify``: a missing, an extra and a differing row are found, repaired by ``--fix``, then exact."""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner

import cdc_sync
from cdc_sync import verification as verify_module
from cdc_sync.cli import NOT_EXACT_EXIT_CODE, main
from tests.mirror_check import AIRFLOW_KEYS, assert_mirrored, mirror_query

SCHEMA = "verified"
EXTRA = ["log"]


def mirror_execute(url: str, sql: str) -> None:
    if url.startswith("duckdb"):
        mirror_query(url, sql)
    else:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(sql)


def plant_differences(source: str, destination: str) -> None:
    """A row the mirror lacks, a row the source no longer has, and a row whose copy differs."""
    mirror_execute(destination, f"DELETE FROM \"{SCHEMA}\".\"dag_run\" WHERE run_id = 'scheduled__3'")
    mirror_execute(destination, f"UPDATE \"{SCHEMA}\".\"dag_run\" SET state = 'failed' WHERE run_id = 'scheduled__4'")
    with psycopg.connect(source, autocommit=True) as connection:
        connection.execute("DELETE FROM dag_run WHERE run_id = 'scheduled__9'")  # and its 4 task instances


def test_verify_reports_missing_extra_and_differing_rows_and_fix_repairs_them(
    airflow3_source: str, destination: str
) -> None:
    assert cdc_sync.sync(airflow3_source, destination, SCHEMA, additional_tables=EXTRA).ok
    clean = cdc_sync.verify(airflow3_source, destination, SCHEMA, additional_tables=EXTRA)
    assert clean.exact, clean.summary()  # every type of every default table compares equal when copied right
    assert {t.table for t in clean.tables} >= {"dag", "dag_run", "task_instance", "job", "log"}

    plant_differences(airflow3_source, destination)
    found = {t.table: t for t in cdc_sync.verify(airflow3_source, destination, SCHEMA, additional_tables=EXTRA).tables}
    dag_run = found["dag_run"]
    assert (dag_run.missing, dag_run.extra, dag_run.differing) == (1, 1, 1)
    assert dag_run.sample_missing == [("dag_4", "scheduled__3")]
    assert dag_run.sample_extra == [("dag_5", "scheduled__9")]
    assert dag_run.sample_differing == [("dag_5", "scheduled__4")]
    assert (found["task_instance"].missing, found["task_instance"].extra) == (0, 4)
    assert all(t.exact for name, t in found.items() if name not in {"dag_run", "task_instance"})

    result = CliRunner().invoke(main, ["verify", "--source", airflow3_source, "--destination", destination,
                                       "--schema", SCHEMA, "--table", "dag_run", "--json"])
    assert result.exit_code == NOT_EXACT_EXIT_CODE
    assert json.loads(result.output)["tables"][0]["missing"] == 1

    fixed = cdc_sync.verify(airflow3_source, destination, SCHEMA, additional_tables=EXTRA, fix=True)
    assert fixed.exact and {t.table for t in fixed.tables if t.repaired} == {"dag_run", "task_instance"}
    assert cdc_sync.verify(airflow3_source, destination, SCHEMA, additional_tables=EXTRA).exact
    for table in ("dag_run", "task_instance"):
        assert_mirrored(airflow3_source, destination, SCHEMA, table, AIRFLOW_KEYS[table])
    gone = mirror_query(destination, f'SELECT run_id FROM "{SCHEMA}"."dag_run" WHERE "_cdc_deleted_at" IS NOT NULL')
    assert gone == [("scheduled__9",)]  # soft delete, the table's delete mode: the history is kept

    result = CliRunner().invoke(main, ["verify", "--source", airflow3_source, "--destination", destination,
                                       "--schema", SCHEMA, "--table", "dag_run"])
    assert result.exit_code == 0, result.output


def test_chunks_follow_the_configured_size_and_only_differing_chunks_are_fetched(
    airflow3_source: str, duckdb_destination: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cdc_sync.sync(airflow3_source, duckdb_destination, SCHEMA, tables=["task_instance"]).ok
    mirror_execute(duckdb_destination, f"UPDATE \"{SCHEMA}\".\"task_instance\" SET hostname = 'changed' "
                                       "WHERE run_id = 'scheduled__1' AND task_id = 'task_1'")
    fetched: list[int] = []
    original = verify_module._rows_in_buckets

    def counting(*args, **kwargs):
        table = original(*args, **kwargs)
        fetched.append(table.num_rows)
        return table

    monkeypatch.setattr(verify_module, "_rows_in_buckets", counting)
    (result,) = cdc_sync.verify(airflow3_source, duckdb_destination, SCHEMA, tables=["task_instance"],
                                chunk_rows=10).tables
    assert result.source_rows == 200 and result.chunks == 20
    assert result.differing_chunks == 1 and result.differing == 1
    assert len(fetched) == 2  # one chunk, read once from each side
    assert max(fetched) < 50  # rows of that chunk only, not of the table


def test_verify_rejects_bad_input_before_reading(airflow3_source: str, duckdb_destination: str) -> None:
    with pytest.raises(cdc_sync.ConfigError, match="chunk_rows"):
        cdc_sync.verify(airflow3_source, duckdb_destination, SCHEMA, chunk_rows=0)
    with pytest.raises(cdc_sync.ConfigError, match="not among the synced tables"):
        cdc_sync.verify(airflow3_source, duckdb_destination, SCHEMA, only=["no_such_table"])
