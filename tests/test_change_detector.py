"""Tables without a cursor on PostgreSQL: changed rows found through xmin, bounded by the snapshot horizon."""

from __future__ import annotations

import psycopg

import cdc_sync
from tests.airflow_schema import fill_airflow3, pg_execute, pg_recreate_database
from tests.mirror_check import assert_mirrored


def test_unchanged_job_table_of_100k_rows_reads_no_row(airflow3_template: str, duckdb_destination: str) -> None:
    name = "cdc_src_jobs100k"
    source = pg_recreate_database(name, template=airflow3_template)
    try:
        fill_airflow3(source, jobs=100_000)
        first = {t.table: t for t in cdc_sync.sync(source, duckdb_destination, tables=["job", "dag"]).tables}
        assert first["job"].strategy == "row_version" and first["job"].rows_read == 100_000
        again = {t.table: t for t in cdc_sync.sync(source, duckdb_destination, tables=["job", "dag"]).tables}
        assert again["job"].rows_read == 0 and again["dag"].rows_read == 0
        with psycopg.connect(source, autocommit=True) as connection:
            # A heartbeat and a pause: neither touches a timestamp Airflow could use as a cursor.
            connection.execute("UPDATE job SET latest_heartbeat = now(), state = 'running' WHERE id = 77")
            connection.execute("UPDATE dag SET is_paused = NOT is_paused WHERE dag_id = 'dag_3'")
            connection.execute("DELETE FROM job WHERE id = 78")
        changed = {t.table: t for t in cdc_sync.sync(source, duckdb_destination, tables=["job", "dag"]).tables}
        assert (changed["job"].rows_read, changed["job"].rows_written, changed["job"].rows_deleted) == (1, 1, 1)
        assert (changed["dag"].rows_read, changed["dag"].rows_written) == (1, 1)
        assert_mirrored(source, duckdb_destination, "airflow", "job", ["id"])
        assert_mirrored(source, duckdb_destination, "airflow", "dag", ["dag_id"])
        strategies = {w.table_name: w.strategy for w in cdc_sync.status(duckdb_destination, "airflow")}
        assert strategies == {"job": "row_version", "dag": "row_version"}
    finally:
        pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_row_changed_by_a_writer_open_during_the_read_is_caught_next_cycle(
    airflow3_source: str, duckdb_destination: str
) -> None:
    cdc_sync.sync(airflow3_source, duckdb_destination, tables=["job"])
    writer = psycopg.connect(airflow3_source)
    try:
        writer.execute("UPDATE job SET state = 'failed' WHERE id = 3")  # not yet committed
        assert cdc_sync.sync(airflow3_source, duckdb_destination, tables=["job"]).tables[0].rows_written == 0
        writer.commit()
    finally:
        writer.close()
    assert cdc_sync.sync(airflow3_source, duckdb_destination, tables=["job"]).tables[0].rows_written == 1
    assert_mirrored(airflow3_source, duckdb_destination, "airflow", "job", ["id"])
