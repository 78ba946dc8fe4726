"""Bad input and failure on the source side: dropped tables, a source that resets, types the warehouse lacks."""

from __future__ import annotations

import psycopg
import pytest

import cdc_sync
from cdc_sync.errors import UnknownTableError
from cdc_sync.sources.postgres import PostgresSnapshot
from cdc_sync.urls import make_url
from tests.airflow_schema import pg_execute, pg_recreate_database
from tests.mirror_check import assert_mirrored, mirror_query
from tests.reset_probes import record_reset_probes

SCHEMA = "airflow"
TI_KEY = ["dag_id", "task_id", "run_id", "map_index"]


def _all_warnings(report) -> str:
    return " ".join([*report.warnings, *(w for table in report.tables for w in table.warnings)])


def _state(destination: str) -> tuple[list[tuple], list[tuple]]:
    marks = mirror_query(destination, "SELECT table_name, high_water_mark, last_success_at "
                                      f'FROM "{SCHEMA}"._cdc_watermarks ORDER BY table_name')
    runs = mirror_query(destination, f'SELECT count(*) FROM "{SCHEMA}"._cdc_runs')
    return marks, runs


def test_default_table_dropped_between_cycles_is_skipped_and_its_mirror_kept(airflow3_source: str,
                                                                             duckdb_destination: str) -> None:
    source, destination = airflow3_source, duckdb_destination
    assert cdc_sync.sync(source, destination, schema=SCHEMA).ok
    before = mirror_query(destination, f'SELECT * FROM "{SCHEMA}".import_error ORDER BY id')
    assert len(before) == 1
    pg_execute("DROP TABLE import_error", make_url(source).database)
    report = cdc_sync.sync(source, destination, schema=SCHEMA)
    assert report.ok and "import_error" not in {t.table for t in report.tables}
    assert "import_error no longer exists in the source" in _all_warnings(report)
    assert mirror_query(destination, f'SELECT * FROM "{SCHEMA}".import_error ORDER BY id') == before, (
        "the mirror of a vanished table is kept, not marked deleted")


def test_named_table_dropped_between_cycles_fails_before_writing(airflow3_source: str,
                                                                 duckdb_destination: str) -> None:
    source, destination = airflow3_source, duckdb_destination
    assert cdc_sync.sync(source, destination, schema=SCHEMA, additional_tables=["log"]).ok
    pg_execute("UPDATE dag_run SET state = 'failed', updated_at = now() WHERE run_id = 'scheduled__3'",
               make_url(source).database)
    pg_execute("DROP TABLE log", make_url(source).database)
    before = _state(destination)
    with pytest.raises(UnknownTableError, match="log") as raised:
        cdc_sync.sync(source, destination, schema=SCHEMA, additional_tables=["log"])
    assert "additional_tables" in str(raised.value)
    assert _state(destination) == before, "nothing was written, not even for the tables that still exist"
    assert mirror_query(destination, f'SELECT state FROM "{SCHEMA}".dag_run WHERE run_id = %s',
                        ("scheduled__3",)) == [("success",)]


def test_source_restored_from_backup_is_reread_in_full(airflow3_source: str, duckdb_destination: str) -> None:
    """The database is restored from a backup taken before the last cycle: rows the mirror holds newer versions
    of, and rows created after the backup, must follow the restored source (the latter kept as soft-deleted)."""
    source, destination = airflow3_source, duckdb_destination
    name = make_url(source).database
    backup = f"{name}_backup"
    assert cdc_sync.sync(source, destination, schema=SCHEMA).ok
    pg_recreate_database(backup, template=name)
    try:
        pg_execute("UPDATE dag_run SET state = 'failed', updated_at = now() WHERE run_id IN "
                   "('scheduled__4', 'scheduled__9')", name)
        pg_execute("UPDATE task_instance SET state = 'failed', updated_at = now() WHERE run_id = 'scheduled__4'",
                   name)
        pg_execute("INSERT INTO dag_run (dag_id, run_id, run_after, state, run_type, clear_number, updated_at) "
                   "VALUES ('dag_1', 'manual__after_backup', now(), 'running', 'manual', 0, now())", name)
        assert cdc_sync.sync(source, destination, schema=SCHEMA).ok
        assert mirror_query(destination, f'SELECT count(*) FROM "{SCHEMA}".dag_run WHERE state = %s',
                            ("failed",)) == [(2,)]

        pg_recreate_database(name, template=backup)  # the restore: same address, older content
        report = cdc_sync.sync(source, destination, schema=SCHEMA)
    finally:
        pg_execute(f'DROP DATABASE IF EXISTS "{backup}" WITH (FORCE)')
    assert report.ok, report.failed
    warnings = _all_warnings(report)
    assert "dag_run" in warnings and "reaches the watermark" in warnings, warnings
    assert_mirrored(source, destination, SCHEMA, "dag_run", ["dag_id", "run_id"])
    assert_mirrored(source, destination, SCHEMA, "task_instance", TI_KEY)
    assert mirror_query(destination, f'SELECT state, "_cdc_deleted_at" IS NOT NULL FROM "{SCHEMA}".dag_run '
                                     "WHERE run_id = %s", ("manual__after_backup",)) == [("running", True)]
    # The next cycle is incremental again: nothing re-read, no warning.
    again = cdc_sync.sync(source, destination, schema=SCHEMA)
    assert "reaches the watermark" not in _all_warnings(again)
    assert {t.table: t.rows_read for t in again.tables}["dag_run"] < 50


def test_reset_probe_is_skipped_when_the_read_reaches_the_watermark(
    airflow3_source: str, duckdb_destination: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe looks for a row at or past the watermark: first the row that reached it when it was saved, by
    key; a table scan only if that row is gone. Rows just read that reach it answer it for free."""
    source, destination = airflow3_source, duckdb_destination
    assert cdc_sync.sync(source, destination, schema=SCHEMA, tables=["dag_run", "task_instance"]).ok
    probes = record_reset_probes(monkeypatch, PostgresSnapshot)
    name = make_url(source).database
    pg_execute("UPDATE dag_run SET state = 'failed', updated_at = now() WHERE run_id = 'scheduled__4'", name)
    changed = cdc_sync.sync(source, destination, schema=SCHEMA, tables=["dag_run", "task_instance"])
    assert {t.table: t.rows_written for t in changed.tables}["dag_run"] == 1
    # dag_run's read reached the watermark; task_instance read nothing, and its row at the mark is still there.
    assert (probes.looked_up, probes.scanned) == (["task_instance:True"], [])
    probes.clear()
    assert cdc_sync.sync(source, destination, schema=SCHEMA, tables=["dag_run", "task_instance"]).ok
    assert (sorted(probes.looked_up), probes.scanned) == (["dag_run:True", "task_instance:True"], [])
    probes.clear()
    # The row at dag_run's mark deleted: the lookup misses, the scan finds no other row at the mark (all are
    # older), and the table is re-read in full.
    pg_execute("DELETE FROM task_instance WHERE run_id = 'scheduled__4'", name)
    pg_execute("DELETE FROM dag_run WHERE run_id = 'scheduled__4'", name)
    after_delete = cdc_sync.sync(source, destination, schema=SCHEMA, tables=["dag_run"])
    assert (probes.looked_up, probes.scanned) == (["dag_run:False"], ["dag_run"])
    assert "reaches the watermark" in _all_warnings(after_delete)
    assert_mirrored(source, destination, SCHEMA, "dag_run", ["dag_id", "run_id"])


def test_newest_rows_deleted_is_found_after_a_read_below_the_watermark(airflow3_source: str,
                                                                         duckdb_destination: str) -> None:
    """The read brings a row, but none reaching the watermark: the probe runs, finds the reset, and the table is
    re-read in full, in place of what the incremental read had merged."""
    source, destination = airflow3_source, duckdb_destination
    name = make_url(source).database
    assert cdc_sync.sync(source, destination, schema=SCHEMA, tables=["dag_run"]).ok
    newest = "(SELECT max(updated_at) FROM dag_run)"
    # A row changed just under the watermark (inside the lookback), and every row at it deleted.
    pg_execute(f"UPDATE dag_run SET state = 'queued', updated_at = {newest} - interval '1 millisecond' "
               f"WHERE run_id = 'scheduled__2'", name)
    pg_execute("DELETE FROM task_instance WHERE (dag_id, run_id) IN (SELECT dag_id, run_id FROM dag_run "
               f"WHERE updated_at = {newest})", name)
    pg_execute(f"DELETE FROM dag_run WHERE updated_at = {newest}", name)
    report = cdc_sync.sync(source, destination, schema=SCHEMA, tables=["dag_run"])
    assert report.ok, report.failed
    assert "reaches the watermark" in _all_warnings(report)
    with psycopg.connect(source) as connection:
        assert report.tables[0].rows_read == connection.execute("SELECT count(*) FROM dag_run").fetchone()[0]
    assert_mirrored(source, destination, SCHEMA, "dag_run", ["dag_id", "run_id"])


EXOTIC_TABLE = """
CREATE TABLE exotic (
    id integer PRIMARY KEY,
    amount numeric(38, 18),
    tags text[],
    matrix integer[][],
    wait interval,
    address inet,
    network cidr,
    spot point,
    words tsvector,
    doc xml,
    flags bit varying(16),
    price money,
    span tstzrange,
    clock time with time zone,
    mac macaddr
);
INSERT INTO exotic VALUES
    (1, 12345678901234567890.123456789012345678, ARRAY['a', 'b,c', 'd"e', NULL], ARRAY[[1, 2], [3, 4]],
     interval '1 year 2 mons 3 days 04:05:06.789', '192.168.0.1/24', '10.0.0.0/8', point(1.5, -2.25),
     to_tsvector('simple', 'the quick fox'), '<a x="1">ü</a>', B'1010', 12.34,
     tstzrange('2026-01-01 00:00+00', '2026-01-02 00:00+00'), '12:34:56.789+02', '08:00:2b:01:02:03'),
    (2, -0.000000000000000001, '{}', NULL, interval '-1 day', '::1', '::/0', NULL, NULL, NULL, B'', NULL,
     'empty', NULL, NULL),
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
"""


def test_types_the_warehouse_lacks_are_mirrored_as_their_exact_text(airflow3_source: str,
                                                                     duckdb_destination: str) -> None:
    import psycopg

    source, destination = airflow3_source, duckdb_destination
    pg_execute(EXOTIC_TABLE, make_url(source).database)
    assert cdc_sync.sync(source, destination, schema=SCHEMA, tables=["exotic"]).ok
    with psycopg.connect(source) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        columns = [row[0] for row in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'exotic' AND column_name <> 'id' "
            "ORDER BY ordinal_position").fetchall()]
        expected = connection.execute(
            f"SELECT id, {', '.join(f'{c}::text' for c in columns)} FROM exotic ORDER BY id").fetchall()
    kinds = dict(mirror_query(destination, "SELECT column_name, data_type FROM information_schema.columns "
                                           "WHERE table_schema = %s AND table_name = 'exotic'", (SCHEMA,)))
    assert all(kinds[c] == "VARCHAR" for c in columns), kinds
    actual = mirror_query(destination, f'SELECT id, {", ".join(columns)} FROM "{SCHEMA}".exotic ORDER BY id')
    assert actual == expected
    assert actual[0][1] == "12345678901234567890.123456789012345678", "numeric keeps every digit"
    assert actual[0][2] == '{a,"b,c","d\\"e",NULL}'
