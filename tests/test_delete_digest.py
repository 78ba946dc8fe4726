"""Delete reconciliation does not trust equal counts: a missed insert plus a real delete must not hide the delete.

The key digest (cdc_sync.key_digest) is computed in SQL on both sides; these tests check that every source engine
and warehouse render the same keys alike, and that a digest mismatch sends the cycle to the key comparison.
"""

from __future__ import annotations

import time

import psycopg
import pytest

import cdc_sync
from cdc_sync.config import build_config
from cdc_sync.deletes import mirror_key_digest
from cdc_sync.destinations import open_destination
from cdc_sync.plan import plan_table
from cdc_sync.sources import open_source
from tests.airflow_schema import mysql_connect
from tests.mirror_check import mirror_query

SCHEMA = "digest"
TABLES = ["dag_run", "log"]  # a text key and an integer key


@pytest.fixture(params=["postgresql", "mariadb"])
def source(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("airflow3_source" if request.param == "postgresql" else "mysql_airflow3_source")


def run_on_source(url: str, sql: str) -> None:
    if url.startswith("mysql"):
        connection = mysql_connect(url.rsplit("/", 1)[1])
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
            connection.commit()
        finally:
            connection.close()
    else:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(sql)


def run_on_mirror(url: str, sql: str) -> None:
    if url.startswith("duckdb"):
        mirror_query(url, sql)
    else:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(sql)


def deletes_in_statistics(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as connection:
        return dict(connection.execute("SELECT relname, n_tup_del FROM pg_stat_user_tables").fetchall())


def wait_for_deletes_in_statistics(url: str, tables: list[str]) -> None:
    """PostgreSQL counts a deletion in its statistics when the deleting session reports them, up to a second or so
    after the commit: a cycle before that trusts the counts, and the next cycle checks."""
    if url.startswith("mysql"):
        return
    deadline = time.monotonic() + 10
    while not all(deletes_in_statistics(url).get(table) for table in tables):
        assert time.monotonic() < deadline, "PostgreSQL did not count the deletions"
        time.sleep(0.1)


def digests(source: str, destination: str, table: str) -> tuple:
    """The key digest of the source table and of its mirror, each computed by its own engine."""
    config = build_config(source=source, destination=destination, schema=SCHEMA, tables=TABLES)
    with open_source(config.source_url) as opened, open_destination(config.destination_url) as mirror:
        plan = plan_table(opened.describe(table), config, row_versions=opened.has_row_versions)
        with opened.snapshot() as snapshot:
            return snapshot.key_digest(plan.table, plan.merge_key), mirror_key_digest(mirror, SCHEMA, plan)


def test_a_missed_insert_does_not_hide_a_real_delete(source: str, destination: str) -> None:
    assert cdc_sync.sync(source, destination, SCHEMA, tables=TABLES).ok
    for table in TABLES:
        at_source, in_mirror = digests(source, destination, table)
        assert at_source is not None and at_source == in_mirror  # rendered alike: the cheap path is taken
        assert at_source.rows > 0

    # A row the mirror missed (taken out of the mirror behind the cycle's back), and a real delete in the source:
    # the counts balance.
    run_on_mirror(destination, f"DELETE FROM \"{SCHEMA}\".\"dag_run\" WHERE run_id = 'scheduled__3'")
    run_on_mirror(destination, f'DELETE FROM "{SCHEMA}"."log" WHERE id = 3')
    run_on_source(source, "DELETE FROM dag_run WHERE run_id = 'scheduled__7'")
    run_on_source(source, "DELETE FROM log WHERE id = 7")
    wait_for_deletes_in_statistics(source, TABLES)
    at_source, in_mirror = digests(source, destination, "dag_run")
    assert at_source.rows == in_mirror.rows and at_source != in_mirror

    report = {t.table: t for t in cdc_sync.sync(source, destination, SCHEMA, tables=TABLES).tables}
    assert report["dag_run"].rows_deleted == 1
    assert report["log"].rows_deleted == 1
    deleted = mirror_query(destination, f'SELECT run_id FROM "{SCHEMA}"."dag_run" '
                           'WHERE "_cdc_deleted_at" IS NOT NULL')
    assert deleted == [("scheduled__7",)]
    assert mirror_query(destination, f'SELECT id FROM "{SCHEMA}"."log" WHERE "_cdc_deleted_at" IS NOT NULL') == [(7,)]


def test_no_digest_is_taken_while_the_source_counts_no_deletion(airflow3_source: str, duckdb_destination: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL counts the rows deleted from each table: while that count has not moved since the last check, no
    row was deleted, so equal row counts prove equal key sets, and the costly key digest is not taken. Once it
    moves, the digest is taken again, and a missed insert cannot hide the delete."""
    from cdc_sync.sources.postgres import PostgresSnapshot

    assert cdc_sync.sync(airflow3_source, duckdb_destination, SCHEMA, tables=TABLES).ok
    taken: list[str] = []
    real = PostgresSnapshot.key_digest
    monkeypatch.setattr(PostgresSnapshot, "key_digest",
                        lambda self, table, key: taken.append(table.name) or real(self, table, key))
    run_on_source(airflow3_source, "INSERT INTO log (dttm, event) VALUES (now(), 'new')")
    assert cdc_sync.sync(airflow3_source, duckdb_destination, SCHEMA, tables=TABLES).ok
    assert taken == []

    run_on_mirror(duckdb_destination, f'DELETE FROM "{SCHEMA}"."log" WHERE id = 3')  # a row the mirror missed
    run_on_source(airflow3_source, "DELETE FROM log WHERE id = 7")  # and a real delete: the counts balance
    wait_for_deletes_in_statistics(airflow3_source, ["log"])
    report = {t.table: t for t in cdc_sync.sync(airflow3_source, duckdb_destination, SCHEMA, tables=TABLES).tables}
    assert taken == ["log"] and report["log"].rows_deleted == 1
    taken.clear()
    assert cdc_sync.sync(airflow3_source, duckdb_destination, SCHEMA, tables=TABLES).ok
    assert taken == []  # checked once per deletion the statistics count
