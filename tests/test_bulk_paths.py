"""The bulk paths: first loads straight into the mirror, full reads merged in bounded chunks, and a source
failure in the middle of a stream surfacing as itself with nothing written."""

from __future__ import annotations

import psycopg
import pytest

import cdc_sync
from cdc_sync import replicate
from cdc_sync.destinations.base import Destination
from cdc_sync.errors import SourceError
from cdc_sync.sources import csv_stream, postgres_arrow
from cdc_sync.sources.postgres import PostgresSnapshot
from tests.mirror_check import assert_mirrored, mirror_query

TI_KEY = ["dag_id", "task_id", "run_id", "map_index"]


def test_full_read_into_a_filled_mirror_merges_in_chunks(airflow3_source: str, destination: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cdc_sync.sync(airflow3_source, destination, tables=["task_instance"])
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("UPDATE task_instance SET hostname = 'raw-sql' WHERE run_id LIKE 'scheduled__1%'")
        connection.execute("DELETE FROM dag_run WHERE run_id = 'scheduled__2'")
    merges: list = []
    monkeypatch.setattr(replicate, "MERGE_CHUNK_ROWS", 30)
    monkeypatch.setattr(csv_stream, "BLOCK_SIZE", 2048)  # several batches, so several chunks
    monkeypatch.setattr(postgres_arrow, "BATCH_SIZE_HINT_BYTES", 2048)  # the same on the ADBC path
    for cls in Destination.__subclasses__():
        monkeypatch.setattr(cls, "execute", _wrap(cls.execute, merges))
    report = cdc_sync.resync(airflow3_source, destination, tables=["task_instance"]).tables[0]
    assert (report.rows_read, report.rows_written, report.rows_deleted) == (196, 44, 4)
    assert len(merges) >= 196 // 30
    assert_mirrored(airflow3_source, destination, "airflow", "task_instance", TI_KEY)


def _wrap(execute, merges):
    def counting(self, statement):
        if statement.sql.startswith("MERGE"):
            merges.append(statement)
        return execute(self, statement)
    return counting


def test_first_load_goes_straight_into_the_mirror_without_merge(airflow3_source: str, destination: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    merges: list = []
    for cls in Destination.__subclasses__():
        monkeypatch.setattr(cls, "execute", _wrap(cls.execute, merges))
    report = cdc_sync.sync(airflow3_source, destination, tables=["task_instance", "dag_run"])
    assert report.ok and not merges
    assert_mirrored(airflow3_source, destination, "airflow", "task_instance", TI_KEY)
    stamps = mirror_query(destination, 'SELECT count(DISTINCT "_cdc_synced_at"), count(*) FROM "airflow"."dag_run"')
    assert stamps == [(1, 50)]


def test_source_failure_mid_stream_is_reported_as_itself_and_writes_nothing(
    airflow3_source: str, duckdb_destination: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = PostgresSnapshot.read_rows

    def failing(self, table, where=None):
        yield from original(self, table, where)
        raise SourceError("connection to the source lost mid-read")

    monkeypatch.setattr(PostgresSnapshot, "read_rows", failing)
    report = cdc_sync.sync(airflow3_source, duckdb_destination, tables=["dag_run"], raise_on_failure=False)
    assert report.failed == {"dag_run": "connection to the source lost mid-read"}
    # Even the mirror table's creation was rolled back with the rows.
    assert mirror_query(duckdb_destination, "SELECT count(*) FROM information_schema.tables "
                        "WHERE table_schema = 'airflow' AND table_name = 'dag_run'") == [(0,)]
