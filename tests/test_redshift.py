"""Redshift destination: the sync scenarios on real PostgreSQL with the SQL the Redshift dialect emits, and every
emitted statement checked against Redshift's own rules (which PostgreSQL does not enforce).

The stand-in differs from Redshift only where it must: SUPER is stored as jsonb (JSON_PARSE is a one-line SQL
function) and VARBYTE as bytea. Everything else — identifiers, upsert, deletes, staging, lock — is the Redshift text.
"""

from __future__ import annotations

import psycopg
import pytest
import sqlglot
from sqlglot import exp

import cdc_sync
from cdc_sync.destinations import redshift_values
from cdc_sync.destinations.redshift import (
    RedshiftDestination,
    RedshiftDialect,
    connect_arguments,
    redshift_settings_from_connection,
)
from cdc_sync.destinations.redshift_values import TRUNCATION_MARKER, VARCHAR_MAX_BYTES, fit_text
from cdc_sync.types import LogicalType
from cdc_sync.urls import parse_url, postgres_conninfo
from tests.lease_checks import check_table_leases

SCHEMA = "airflow-qwe123"
TABLES = ["dag", "dag_run", "task_instance", "import_error", "log", "dag_tag"]


class PostgresStandInDialect(RedshiftDialect):
    """Redshift SQL with the two types PostgreSQL lacks replaced: for the test stand-in only."""

    TYPE_NAMES = {**RedshiftDialect.TYPE_NAMES, LogicalType.JSON: "JSONB", LogicalType.BYTES: "BYTEA"}
    REPORTED_TYPES = {**RedshiftDialect.REPORTED_TYPES, LogicalType.JSON: "jsonb", LogicalType.BYTES: "bytea"}


@pytest.fixture
def redshift_url(postgres_destination, monkeypatch):
    """A PostgreSQL database standing in for Redshift; returns a redshift:// URL and the statements sent."""
    with psycopg.connect(postgres_destination, autocommit=True) as connection:
        connection.execute("CREATE FUNCTION json_parse(text) RETURNS jsonb LANGUAGE sql IMMUTABLE "
                           "AS 'SELECT $1::jsonb'")
        # Redshift's STRTOL, for the key digest's hex slices (base 16 only).
        connection.execute("CREATE FUNCTION strtol(text, integer) RETURNS bigint LANGUAGE sql IMMUTABLE "
                           "AS $$SELECT ('x' || lpad($1, 16, '0'))::bit(64)::bigint$$")
    sent: list[str] = []
    original = RedshiftDestination._cursor_execute

    def recording(self, statement):
        sent.append(statement.sql)
        return original(self, statement)

    def connect(self, arguments):
        assert arguments["ssl"] is True  # TLS is the default the real driver would get
        return psycopg.connect(**postgres_conninfo(parse_url(postgres_destination, role="destination")))

    monkeypatch.setattr(RedshiftDestination, "dialect", PostgresStandInDialect())
    monkeypatch.setattr(RedshiftDestination, "_connect", connect)
    monkeypatch.setattr(RedshiftDestination, "_cursor_execute", recording)
    yield postgres_destination.replace("postgresql://", "redshift://"), sent, postgres_destination


def count(url: str, sql: str) -> int:
    with psycopg.connect(url) as connection:
        connection.execute(f'SET search_path TO "{SCHEMA}"')
        return connection.execute(sql).fetchone()[0]


def test_initial_sync_updates_late_commit_and_soft_deletes(airflow3_source, redshift_url):
    url, sent, pg = redshift_url
    assert cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=TABLES, lookback_seconds=0).ok
    assert count(pg, "SELECT count(*) FROM task_instance") == 200
    assert count(pg, "SELECT (conf->>'run')::int FROM dag_run WHERE run_id = 'scheduled__7'") == 7
    with psycopg.connect(airflow3_source, autocommit=True) as source:
        source.execute("UPDATE task_instance SET state = 'failed', updated_at = now() "
                       "WHERE run_id = 'scheduled__3' AND task_id = 'task_2'")
        source.execute("INSERT INTO dag_run (dag_id, run_id, run_after, state, run_type, clear_number, updated_at) "
                       "VALUES ('dag_1', 'late', now(), 'queued', 'manual', 0, now() - interval '3 days')")
        source.execute("DELETE FROM task_instance WHERE run_id = 'scheduled__4'")
        source.execute("DELETE FROM dag_run WHERE run_id = 'scheduled__4'")
    assert cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=TABLES, lookback_seconds=4 * 86400).ok
    assert count(pg, "SELECT count(*) FROM task_instance WHERE state = 'failed'") == 1
    assert count(pg, "SELECT count(*) FROM dag_run WHERE run_id = 'late'") == 1
    assert count(pg, "SELECT count(*) FROM dag_run") == 51
    assert count(pg, "SELECT count(*) FROM dag_run WHERE _cdc_deleted_at IS NOT NULL") == 1
    assert count(pg, "SELECT count(*) FROM task_instance WHERE _cdc_deleted_at IS NOT NULL") == 4
    assert count(pg, "SELECT count(*) FROM (SELECT 1 FROM task_instance GROUP BY dag_id, task_id, run_id, "
                     "map_index HAVING count(*) > 1) d") == 0
    assert_redshift_rules(sent)


def test_failure_before_commit_loses_nothing_and_duplicates_nothing(airflow3_source, redshift_url, monkeypatch):
    url, sent, pg = redshift_url
    assert cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=["dag_run"]).ok
    with psycopg.connect(airflow3_source, autocommit=True) as source:
        source.execute("UPDATE dag_run SET state = 'failed', updated_at = now() WHERE run_id = 'scheduled__9'")
        source.execute("INSERT INTO dag_run (dag_id, run_id, run_after, state, run_type, clear_number, updated_at) "
                       "VALUES ('dag_1', 'new_run', now(), 'queued', 'manual', 0, now())")
    from cdc_sync.state import StateStore

    save_watermark = StateStore.save_watermark

    def crash(self, watermark):
        raise cdc_sync.DestinationError("injected crash before commit")

    monkeypatch.setattr(StateStore, "save_watermark", crash)
    assert not cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=["dag_run"], raise_on_failure=False).ok
    assert count(pg, "SELECT count(*) FROM dag_run WHERE run_id = 'new_run'") == 0
    assert count(pg, "SELECT count(*) FROM dag_run WHERE state = 'failed'") == 0
    monkeypatch.setattr(StateStore, "save_watermark", save_watermark)
    assert cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=["dag_run"]).ok
    assert count(pg, "SELECT count(*) FROM dag_run") == 51
    assert count(pg, "SELECT count(*) FROM dag_run WHERE state = 'failed'") == 1
    assert_redshift_rules(sent)


def test_stack_trace_over_65535_bytes_loads_with_a_marker(airflow3_source, redshift_url):
    url, _, pg = redshift_url
    trace = "Traceback (most recent call last):\n" + "  File \"dag.py\", line 1, in <module> — ünïcødé\n" * 3000
    assert len(trace.encode()) > 2 * VARCHAR_MAX_BYTES
    with psycopg.connect(airflow3_source, autocommit=True) as source:
        source.execute("UPDATE import_error SET stacktrace = %s", (trace,))
    assert cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=["import_error"]).ok
    with psycopg.connect(pg) as connection:
        stored = connection.execute(f'SELECT stacktrace FROM "{SCHEMA}".import_error').fetchone()[0]
    assert len(stored.encode()) <= VARCHAR_MAX_BYTES
    assert trace.startswith(stored[: stored.index("…[truncated")])
    assert stored.endswith(TRUNCATION_MARKER.format(size=len(trace.encode())))


def test_bulk_path_issues_a_bounded_number_of_statements(airflow3_source, redshift_url):
    url, sent, pg = redshift_url
    with psycopg.connect(airflow3_source, autocommit=True) as source:
        source.execute("INSERT INTO log (dttm, dag_id, event, owner, extra) SELECT now(), 'dag_1', 'bulk', 'x', "
                       "'row ' || g FROM generate_series(1, 30000) AS g")
    report = cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=["log"])
    assert report.ok and report.tables[0].rows_read == 30030
    assert count(pg, "SELECT count(*) FROM log") == 30030
    inserts = [s for s in sent if s.startswith('INSERT INTO "_cdc_stage_rows_log"')]
    assert 1 < len(inserts) <= 30030 * 12 // redshift_values.MAX_PARAMETERS + 1  # multi-row, never per row
    assert all(len(s.encode()) < redshift_values.STATEMENT_LIMIT_BYTES for s in sent)
    assert len(sent) < 120, len(sent)


def test_cycle_lock_is_a_lease(redshift_url):
    url, _, _ = redshift_url
    first = RedshiftDestination(parse_url(url, role="destination"))
    other = RedshiftDestination(parse_url(url, role="destination"), {"lock_lease_seconds": 0})
    try:
        assert first.try_lock(SCHEMA)
        assert not RedshiftDestination(parse_url(url, role="destination")).try_lock(SCHEMA)
        first.unlock(SCHEMA)
        assert other.try_lock(SCHEMA)  # zero-second lease: expired at once, as a crashed cycle's would be
        assert first.try_lock(SCHEMA)
    finally:
        first.close()
        other.close()


def test_table_leases_are_independent_of_each_other_and_of_the_schema_lease(redshift_url):
    url, sent, _ = redshift_url
    first = RedshiftDestination(parse_url(url, role="destination"))
    second = RedshiftDestination(parse_url(url, role="destination"))
    try:
        check_table_leases(first, second, SCHEMA)
    finally:
        first.close()
        second.close()
    assert_redshift_rules(sent)


def assert_redshift_rules(sent: list[str]) -> None:
    """Redshift rejects what PostgreSQL accepts: check each statement's shape with sqlglot's Redshift parser."""
    assert sent
    for sql in sent:
        tree = sqlglot.parse_one(sql.replace("%s", "NULL"), read="redshift")
        assert "IS DISTINCT FROM" not in sql.upper() and "IS NOT DISTINCT FROM" not in sql.upper(), sql
        if isinstance(tree, exp.Merge):
            assert isinstance(tree.args["using"], exp.Table), "Redshift MERGE source must be a plain table"
            assert not tree.this.alias, "Redshift MERGE takes no target alias"
            whens = tree.args["whens"].expressions
            assert len(whens) <= 2 and all(not w.args.get("condition") for w in whens), sql
        if isinstance(tree, exp.Delete) and tree.args.get("using"):
            assert all(isinstance(t, exp.Table) for t in tree.args["using"]), "DELETE … USING takes tables"
        for identifier in tree.find_all(exp.Identifier):
            assert identifier.this == identifier.this.lower(), f"upper-case identifier in {sql}"
        assert "TEMPORARY TABLE" not in sql or not tree.this.this.db


def test_rules_catch_a_postgres_only_merge():
    with pytest.raises(AssertionError):
        assert_redshift_rules(['MERGE INTO "s"."t" AS t USING (SELECT 1 AS "id") AS s ON t."id" = s."id" '
                               'WHEN NOT MATCHED THEN INSERT ("id") VALUES (s."id")'])


def test_fit_text_cuts_on_a_character_boundary():
    assert fit_text("é" * 10, limit=60) == "é" * 10
    cut = fit_text("é" * 40_000)
    assert len(cut.encode()) <= VARCHAR_MAX_BYTES and cut.endswith("80000 bytes]")


def test_settings_from_an_airflow_connection():
    url, options = redshift_settings_from_connection({
        "host": "cluster.abc.eu-west-1.redshift.amazonaws.com", "port": 5439, "login": "loader",
        "password": "s3cret", "schema": "analytics",
        "extra": {"iam": True, "cluster_identifier": "cluster", "region": "eu-west-1", "db_user": "loader"},
    })
    assert "s3cret" not in url.render_as_string(hide_password=False)
    arguments = connect_arguments(url, options)
    assert arguments["ssl"] is True and arguments["iam"] is True and arguments["database"] == "analytics"
    assert arguments["password"] == "s3cret" and arguments["cluster_identifier"] == "cluster"
    serverless_url, serverless = redshift_settings_from_connection({
        "host": "wg.123.eu-west-1.redshift-serverless.amazonaws.com", "login": "u", "schema": "dev",
        "extra": {"iam": "true", "is_serverless": "true", "serverless_work_group": "wg"}})
    arguments = connect_arguments(serverless_url, serverless)
    assert arguments["is_serverless"] is True and arguments["port"] == 5439


def test_a_table_without_a_key_is_replaced_whole(airflow3_source, redshift_url):
    url, sent, pg = redshift_url
    with psycopg.connect(airflow3_source, autocommit=True) as source:
        source.execute("CREATE TABLE no_key (name text, value integer)")
        source.execute("INSERT INTO no_key VALUES ('a', 1), ('b', 2), ('b', 2)")
    assert cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=["no_key"]).ok
    with psycopg.connect(airflow3_source, autocommit=True) as source:
        source.execute("DELETE FROM no_key WHERE name = 'a'")
        source.execute("INSERT INTO no_key VALUES ('c', 3)")
    assert cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=["no_key"]).ok
    with psycopg.connect(pg) as connection:
        rows = connection.execute(f'SELECT name, value FROM "{SCHEMA}".no_key ORDER BY name').fetchall()
    assert rows == [("b", 2), ("b", 2), ("c", 3)]
    assert_redshift_rules(sent)


def test_s3_copy_path_without_aws_credentials_fails_the_table_in_one_line(airflow3_source, redshift_url,
                                                                          monkeypatch, tmp_path):
    """The COPY path's boto3 errors are the warehouse's failure of that table, recorded, never a traceback."""
    url, _, pg = redshift_url
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    report = cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=["dag_run"], raise_on_failure=False,
                           destination_options={"s3_bucket": "mirror-bucket", "iam_role": "arn:aws:iam::1:role/r",
                                                "region": "us-east-1"})
    error = report.failed["dag_run"]
    assert error.startswith("Loading rows into dag_run on the Redshift destination") and "\n" not in error
    assert "NoCredentialsError, no usable AWS credentials" in error
    assert count(pg, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'dag_run'") == 0
    assert count(pg, "SELECT last_error FROM _cdc_watermarks WHERE table_name = 'dag_run'") == error


def test_query_mode_history(airflow3_source, redshift_url):
    """history=True in the query mode (cdc_sync.history) through the stand-in: the scenario of
    tests/test_history.py, and every statement parsed by sqlglot's Redshift parser."""
    from tests.mirror_check import mirror_query
    from tests.test_history import KEY_SQL, query_mode_scenario

    url, sent, stand_in = redshift_url

    def read_versions(key: tuple) -> list[tuple]:
        return mirror_query(stand_in, "SELECT state, _cdc_op, _cdc_valid_from, _cdc_valid_to "
                                      f'FROM "{SCHEMA}".task_instance__history WHERE {KEY_SQL} '
                                      "ORDER BY _cdc_valid_from, _cdc_valid_to NULLS LAST", key)

    query_mode_scenario(airflow3_source, url, SCHEMA, read_versions)
    assert_redshift_rules(sent)
