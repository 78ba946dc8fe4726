"""Log capture's footprint on a PostgreSQL source (cdc_sync.sources.postgres_log and .publication): names, the
publication's column lists, ownership, the capability check, peeking and advancing, against the real server."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from cdc_sync.config import build_config
from cdc_sync.errors import ConfigError, SourceError
from cdc_sync.plan import plan_table
from cdc_sync.sources import open_log, open_source
from cdc_sync.sources.pgoutput import Commit, Insert, Relation, Update
from cdc_sync.sources.postgres_log import ForeignLogObjectError
from cdc_sync.sources.publication import (
    LogNames,
    PublishedTable,
    ReplicaIdentity,
    SourceFacts,
    derived_name,
    log_capture_refusal,
    publication_problems,
)
from cdc_sync.urls import make_url
from tests.airflow_schema import PG_ADMIN

SYNCED = ["connection", "dag_run", "task_instance"]


# Names and rules: no database.

def test_names_follow_the_schema_and_never_collide() -> None:
    assert LogNames.for_schema("airflow_mirror") == LogNames("cdc_sync_airflow_mirror", "cdc_sync_airflow_mirror")
    folded = {derived_name(schema) for schema in ("Airflow-Mirror", "airflow_mirror", "airflow-mirror", "x" * 80,
                                                   "x" * 81)}
    assert len(folded) == 5
    assert all(len(name) <= 63 and name.startswith("cdc_sync_") for name in folded)
    assert LogNames.for_schema("m", slot="cdc_sync_mine").slot == "cdc_sync_mine"


@pytest.mark.parametrize("slot", ["mine", "cdc_sync_Mine", "cdc_sync_" + "x" * 60])
def test_an_override_outside_cdc_syncs_names_is_refused(slot: str) -> None:
    with pytest.raises(ConfigError, match="must start with 'cdc_sync_'"):
        LogNames.for_schema("m", slot=slot)


def identity(kind: str, key: tuple[str, ...], columns: tuple[str, ...] = ("id", "name", "password")):
    return ReplicaIdentity(kind, key, columns)


@pytest.mark.parametrize(("identity", "column_lists", "problem"), [
    (identity("d", ("id",)), True, None),
    (identity("d", ()), True, "no replica identity"),
    (identity("n", ()), True, "no replica identity"),
    (identity("f", ()), True, "replica identity of t includes password"),
    (identity("d", ("id", "password")), True, "replica identity of t includes password"),
    (identity("i", ("name",)), True, None),
    (identity("d", ("id",)), False, "cannot leave columns out"),
])
def test_a_publication_that_would_break_source_writes_or_leak_is_refused(identity, column_lists, problem) -> None:
    problems = publication_problems([PublishedTable("t", ("id", "name"))], {"t": identity}, column_lists)
    assert problems == [] if problem is None else problem in " ".join(problems)


def facts(**changes) -> SourceFacts:
    base = dict(wal_level="logical", server_version=150004, role="airflow", superuser=False, replication=True,
                rds_replication=False, may_create_publication=True, unowned_tables=(), slots_used=0,
                slots_allowed=10)
    return SourceFacts(**{**base, **changes})


SET_UP = {"slot_ready": True, "publication_current": True}  # an admin ran `cdc-sync capture setup`


@pytest.mark.parametrize(("changes", "reason"), [
    ({}, None),
    ({"wal_level": "replica"}, "wal_level is replica; set wal_level=logical and restart the source"),
    ({"server_version": 140010}, "PostgreSQL 14"),
    ({"replication": False}, "the source role airflow lacks REPLICATION, which PostgreSQL requires to read a "
                             "replication slot: ALTER ROLE airflow WITH REPLICATION"),
    ({"replication": False, "rds_replication": True}, None),
    # Reading a slot needs REPLICATION even when an admin made it; setup spares only the publication's rights.
    ({"replication": False, **SET_UP}, "the replication slot exists, but the source role airflow lacks REPLICATION"),
    ({"may_create_publication": False, "unowned_tables": ("dag_run",), **SET_UP}, None),
    ({"may_create_publication": False}, "may not create the publication: grant it CREATE on the database"),
    ({"unowned_tables": ("dag_run",)}, "does not own dag_run"),
    ({"unowned_tables": ("dag_run",), "slot_ready": True}, "does not own dag_run"),  # the publication must change
    ({"slots_used": 10}, "all 10 replication slots"),
    ({"slots_used": 10, **SET_UP}, None),  # the slot is one of them
    ({"wal_level": "replica", **SET_UP}, "wal_level is replica"),
])
def test_auto_says_why_the_log_cannot_be_read(changes, reason) -> None:
    refusal = log_capture_refusal(facts(**changes))
    assert refusal is None if reason is None else reason in refusal


# Against the server.

@pytest.fixture
def log_source(airflow3_source: str, logical_decoding_available: None) -> str:
    """An Airflow 3 source database; every slot left in it is dropped afterwards (slots pin WAL)."""
    yield airflow3_source
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s",
                           (make_url(airflow3_source).database,))


def published_tables(url: str) -> list[PublishedTable]:
    config = build_config(source=url, destination="duckdb:///unused.duckdb", tables=SYNCED)
    with open_source(make_url(url)) as source:
        schemas = source.describe_tables(SYNCED)
    plans = [plan_table(schemas[name], config, row_versions=True) for name in SYNCED]
    return [PublishedTable(plan.name, plan.column_names) for plan in plans]


def execute(url: str, sql: str, params: tuple = ()) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql, params)


def test_setup_publishes_no_secret_and_peeks_advances_and_drops_only_its_own(log_source: str) -> None:
    names = LogNames.for_schema(f"mirror_{uuid.uuid4().hex[:8]}")
    tables = published_tables(log_source)
    connection_columns = next(table.columns for table in tables if table.name == "connection")
    assert "password" not in connection_columns and "extra" not in connection_columns
    with open_log(make_url(log_source), names) as log:
        assert log.refusal(tables) is None  # a superuser on a wal_level=logical server
        done = log.setup(tables)
        assert [line.split(" ")[:2] for line in done] == [["created", "publication"], ["created", "replication"]]
        assert log.setup(tables) == []  # nothing to do twice
        status = log.status()
        assert status.ready and not status.active and status.wal_status == "reserved"
        assert {table.name: set(table.columns) for table in status.tables} == {
            table.name: set(table.columns) for table in tables}
        assert status.retained_wal_bytes is not None and status.retained_wal_bytes >= 0

        # Airflow's own writes still work on published tables, and the secret never reaches the log.
        execute(log_source, "INSERT INTO connection (conn_id, conn_type, password, extra, is_encrypted, "
                            "is_extra_encrypted) VALUES ('db', 'postgres', 'hunter2', '{\"k\": \"s3cret\"}', false, "
                            "false)")
        execute(log_source, "UPDATE connection SET password = 'hunter3', host = 'h' WHERE conn_id = 'db'")
        end = log.current_lsn()
        execute(log_source, "UPDATE connection SET host = 'later' WHERE conn_id = 'db'")
        changes = list(log.peek(end))
        # A bounded call stops at the end of the transaction that holds its last change.
        first = [change.message for change in log.peek(end, upto_changes=1)]
        assert first == [change.message for change in changes][:len(first)]
        assert sum(isinstance(message, Commit) for message in first) == 1
        messages = [change.message for change in changes]
        relation = next(message for message in messages if isinstance(message, Relation))
        assert relation.name == "connection" and set(relation.column_names) == set(connection_columns)
        rows = [message.new for message in messages if isinstance(message, Insert | Update)]
        assert len(rows) == 2 and rows[1][relation.column_names.index("host")] == "h"  # not 'later': after end
        assert not any(secret in repr(changes) for secret in ("hunter2", "hunter3", "s3cret"))

        # The slot moves only forward, and what it moved past is not read again.
        commit = max(m.end_lsn for m in messages if isinstance(m, Commit))
        assert log.advance(commit) >= commit
        assert log.status().confirmed_flush_lsn >= commit
        assert log.advance(commit - 1) == log.status().confirmed_flush_lsn  # a replay: no error, no move back
        later = [change.message for change in log.peek(None)]
        assert [m.new[relation.column_names.index("host")] for m in later if isinstance(m, Update)] == ["later"]

        # A table added to the sync is added to the publication.
        extended = [*tables, PublishedTable("job", ("id", "state"))]
        done = log.setup(extended)
        assert done[0].startswith(f"set the tables of publication {names.publication} to connection (id, ")
        assert done[0].endswith("; dag_run (every column); task_instance (every column); job (id, state)")
        # A column list only where a column is left out: PostgreSQL refuses to drop a listed column, so a list on a
        # whole table would make Airflow's next upgrade fail on every column it drops.
        assert {table.name: table.column_list for table in log.status().tables} == {
            "connection": True, "dag_run": False, "task_instance": False, "job": True}
        execute(log_source, "ALTER TABLE dag_run DROP COLUMN triggered_by")
        with pytest.raises(psycopg.errors.DependentObjectsStillExist, match="publication"):
            execute(log_source, "ALTER TABLE job DROP COLUMN state")

        assert log.drop() == [f"dropped replication slot {names.slot}", f"dropped publication {names.publication}"]
        status = log.status()
        assert not (status.slot_exists or status.publication_exists)
        with pytest.raises(ConfigError, match="capture setup"):
            list(log.peek(None))


def test_objects_of_its_names_that_it_did_not_make_are_never_touched(log_source: str) -> None:
    names = LogNames.for_schema(f"mirror_{uuid.uuid4().hex[:8]}")
    tables = published_tables(log_source)
    execute(log_source, f'CREATE PUBLICATION "{names.publication}" FOR TABLE dag_run')  # someone else's
    with open_log(make_url(log_source), names) as log:
        for attempt in (log.drop, lambda: log.setup(tables), lambda: log.advance(1 << 40)):
            with pytest.raises(ForeignLogObjectError, match="not made by cdc_sync"):
                attempt()
        assert log.status().publication_exists and not log.status().slot_exists
        execute(log_source, f'DROP PUBLICATION "{names.publication}"')
        # A slot of its name without cdc_sync's publication is someone else's too.
        execute(log_source, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (names.slot,))
        for attempt in (log.drop, lambda: log.setup(tables)):
            with pytest.raises(ForeignLogObjectError, match=f"slot {names.slot} exists"):
                attempt()
        status = log.status()
        assert status.slot_exists and not status.slot_owned and not status.publication_exists


def test_a_table_without_replica_identity_is_refused_before_anything_is_created(log_source: str) -> None:
    execute(log_source, "CREATE TABLE keyless (id int, note text)")
    names = LogNames.for_schema(f"mirror_{uuid.uuid4().hex[:8]}")
    with open_log(make_url(log_source), names) as log:
        with pytest.raises(ConfigError, match="keyless has no replica identity"):
            log.setup([*published_tables(log_source), PublishedTable("keyless", ("id", "note"))])
        status = log.status()
        assert not (status.publication_exists or status.slot_exists)
    execute(log_source, "UPDATE keyless SET note = 'still writable'")


def test_a_role_without_replication_is_told_why(log_source: str) -> None:
    role = f"cdc_reader_{uuid.uuid4().hex[:8]}"
    tables = published_tables(log_source)
    execute(log_source, f'CREATE ROLE "{role}" LOGIN')
    try:
        url = make_url(log_source).set(username=role)
        with open_log(url, LogNames.for_schema("mirror")) as log:
            assert f"ALTER ROLE {role} WITH REPLICATION" in log.refusal(tables)
        execute(log_source, f'ALTER ROLE "{role}" REPLICATION')
        with open_log(url, LogNames.for_schema("mirror")) as log:
            assert "grant it CREATE on the database" in log.refusal(tables)
        execute(log_source, f'GRANT CREATE ON DATABASE "{url.database}" TO "{role}"')
        with open_log(url, LogNames.for_schema("mirror")) as log:
            assert "does not own connection, dag_run, task_instance" in log.refusal(tables)
    finally:
        execute(log_source, f'DROP OWNED BY "{role}"')
        execute(log_source, f'DROP ROLE "{role}"')


def test_driver_errors_leave_as_source_errors_and_other_engines_are_refused(log_source: str) -> None:
    names = LogNames.for_schema(f"mirror_{uuid.uuid4().hex[:8]}")
    with open_log(make_url(log_source), names) as log:
        with pytest.raises(SourceError, match=r"Setting up the publication .* failed \(SQLSTATE 42703"):
            log.setup([PublishedTable("dag_run", ("id", "no_such_column"))])
        assert not log.status().publication_exists
    with pytest.raises(ConfigError, match="this source is SQLite: use the query capture mode"):
        open_log(make_url("sqlite:///airflow.db"), names)


def test_the_capture_commands_set_up_show_and_drop(log_source: str, tmp_path) -> None:
    from click.testing import CliRunner

    from cdc_sync.cli import main

    schema = f"mirror_{uuid.uuid4().hex[:8]}"
    common = ["--source", log_source, "--schema", schema, "--additional-tables", "connection"]
    runner = CliRunner()
    made = runner.invoke(main, ["capture", "setup", *common])
    assert made.exit_code == 0, made.output
    assert f"created publication cdc_sync_{schema} for dag " in made.output
    assert f"created replication slot cdc_sync_{schema} (pgoutput)" in made.output
    shown = runner.invoke(main, ["capture", "status", *common, "--json"])
    status = json.loads(shown.output)
    assert status["slot made by cdc_sync"] and status["publication made by cdc_sync"] and not status["active"]
    assert status["retained WAL (MiB)"] >= 0 and status["WAL status"] == "reserved"
    assert {"dag", "dag_run", "task_instance", "job", "connection"} <= set(status["tables"])
    assert "conn_id" in status["tables"]["connection"] and "password" not in status["tables"]["connection"]
    table = runner.invoke(main, ["capture", "status", *common]).output
    assert "retained WAL (MiB)" in table and f"cdc_sync_{schema}" in table and "table connection" in table
    dropped = runner.invoke(main, ["capture", "drop", *common])
    assert dropped.output.splitlines() == [f"dropped replication slot cdc_sync_{schema}",
                                           f"dropped publication cdc_sync_{schema}"]
    again = runner.invoke(main, ["capture", "drop", *common])
    assert again.exit_code == 0 and "neither slot" in again.output
    sqlite = runner.invoke(main, ["capture", "setup", "--source", f"sqlite:///{tmp_path}/a.db"])
    assert sqlite.exit_code == 2 and "use the query capture mode" in sqlite.output
    assert "Traceback" not in sqlite.output
