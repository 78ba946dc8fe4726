"""Redshift destination through the real ``redshift_connector`` driver, on the local PostgreSQL via a loopback proxy.

test_redshift.py swaps the driver for psycopg; here nothing is swapped but the two column types PostgreSQL lacks
(SUPER→jsonb, VARBYTE→bytea, the same stand-in dialect): the driver's startup, parameter binding, type
conversions, ``rowcount``, transactions and error fields are the real ones. The proxy (tests/redshift_proxy.py)
only makes the handshake acceptable to PostgreSQL.

Known stand-in divergence, asserted below so a change is noticed: the driver binds ``bytes`` as Redshift VARBYTE
hex text, which PostgreSQL's bytea input reads as literal characters, so a bytea value arrives hex-encoded.
"""

from __future__ import annotations

import psycopg
import pytest

import cdc_sync
from cdc_sync.destinations.dialect import Statement
from cdc_sync.destinations.redshift import RedshiftDestination
from cdc_sync.urls import parse_url
from tests.redshift_proxy import REDSHIFT_SERVER_VERSION, running_proxy
from tests.test_redshift import SCHEMA, PostgresStandInDialect

NO_TLS = {"ssl": False}
KEY = "dag_id, task_id, run_id, map_index"


@pytest.fixture
def proxy():
    with running_proxy(lifetime=300) as running:
        yield running


@pytest.fixture
def driver_url(postgres_destination, proxy, monkeypatch):
    """A redshift:// URL to the destination database through the proxy; the real driver, stand-in types."""
    with psycopg.connect(postgres_destination, autocommit=True) as connection:
        connection.execute("CREATE FUNCTION json_parse(text) RETURNS jsonb LANGUAGE sql IMMUTABLE "
                           "AS 'SELECT $1::jsonb'")
        # Redshift's STRTOL, for the key digest's hex slices (base 16 only).
        connection.execute("CREATE FUNCTION strtol(text, integer) RETURNS bigint LANGUAGE sql IMMUTABLE "
                           "AS $$SELECT ('x' || lpad($1, 16, '0'))::bit(64)::bigint$$")
    monkeypatch.setattr(RedshiftDestination, "dialect", PostgresStandInDialect())
    database = postgres_destination.rsplit("/", 1)[1]
    return f"redshift://postgres:x@127.0.0.1:{proxy.port}/{database}", postgres_destination


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as connection:
        connection.execute(f'SET search_path TO "{SCHEMA}"')
        return connection.execute(sql).fetchall()


def source_task_instances(source: str) -> list[tuple]:
    with psycopg.connect(source) as connection:
        return connection.execute(f"SELECT {KEY}, state, try_number, start_date, hostname FROM task_instance "
                                  f"ORDER BY {KEY}").fetchall()


def test_proxy_speaks_to_the_real_driver(postgres_destination, proxy):
    import redshift_connector

    database = postgres_destination.rsplit("/", 1)[1]
    connection = redshift_connector.connect(host="127.0.0.1", port=proxy.port, database=database,
                                            user="postgres", password="x", ssl=False, timeout=10)
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT %s::int + 1, current_database()", (41,))
        assert cursor.fetchall() == ([42, database],)
        assert (b"server_version", REDSHIFT_SERVER_VERSION) in connection.parameter_statuses
    finally:
        connection.close()
    sent = proxy.startup_parameters[-1]
    assert "client_protocol_version" in sent and sent["database"] == database  # what the proxy had to strip


def test_sync_through_the_driver_mirrors_and_writes_only_changes(airflow3_source, driver_url, proxy):
    url, pg = driver_url
    first = cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=[], destination_options=NO_TLS)
    assert first.ok and len(first.tables) > 30, first  # every Airflow table, JSON and bytes columns included
    assert proxy.connections >= 1
    expected = source_task_instances(airflow3_source)
    assert len(expected) == 200
    mirrored = rows(pg, f"SELECT {KEY}, state, try_number, start_date, hostname FROM task_instance ORDER BY {KEY}")
    assert mirrored == expected
    with psycopg.connect(airflow3_source) as source:
        runs = source.execute("SELECT run_id, conf FROM dag_run ORDER BY run_id").fetchall()
        configs = source.execute(f"SELECT {KEY}, executor_config FROM task_instance ORDER BY {KEY}").fetchall()
    assert rows(pg, "SELECT run_id, conf FROM dag_run ORDER BY run_id") == runs  # SUPER stand-in via JSON_PARSE
    # The bytea divergence: the driver's VARBYTE hex text is stored by PostgreSQL as those characters.
    assert rows(pg, f"SELECT {KEY}, executor_config FROM task_instance ORDER BY {KEY}") == [
        (*row[:4], row[4].hex().encode()) for row in configs]
    assert rows(pg, "SELECT count(*) FROM task_instance WHERE _cdc_deleted_at IS NOT NULL") == [(0,)]
    synced_before = dict(((r[0], r[1], r[2], r[3]), r[4]) for r in rows(
        pg, f"SELECT {KEY}, _cdc_synced_at FROM task_instance"))

    with psycopg.connect(airflow3_source, autocommit=True) as source:
        changed = source.execute(
            "UPDATE task_instance SET state = 'failed', hostname = 'worker-ü', updated_at = now() "
            "WHERE run_id IN ('scheduled__3', 'scheduled__5') AND task_id = 'task_1' "
            f"RETURNING {KEY}").fetchall()
    assert len(changed) == 2

    second = cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=["task_instance"],
                           destination_options=NO_TLS)
    assert second.ok, second
    assert rows(pg, f"SELECT {KEY}, state, try_number, start_date, hostname FROM task_instance "
                    f"ORDER BY {KEY}") == source_task_instances(airflow3_source)
    after = {(r[0], r[1], r[2], r[3]): r[4] for r in rows(pg, f"SELECT {KEY}, _cdc_synced_at FROM task_instance")}
    rewritten = {key for key, synced in after.items() if synced != synced_before[key]}
    assert rewritten == set(changed)  # exactly the changed rows were written
    assert rows(pg, "SELECT count(*) FROM task_instance WHERE hostname = 'worker-ü' AND state = 'failed'") == [(2,)]


def test_driver_type_round_trip_and_the_bytea_divergence(driver_url):
    url, _ = driver_url
    destination = RedshiftDestination(parse_url(url, role="destination"), NO_TLS)
    try:
        json_text, raw, missing = destination.query(Statement(
            "SELECT JSON_PARSE(%s)::text, %s::bytea, %s::timestamptz", ('{"a": [1, "é"]}', b"\x00\xff", None)))[0]
    finally:
        destination.close()
    assert json_text == '{"a": [1, "é"]}' and missing is None
    # The driver sends bytes as VARBYTE hex text; PostgreSQL's bytea reads the four characters "00ff".
    assert raw == "\\x30306666"  # bytea comes back as text: the driver has no decoder for OID 17
