"""Secrets never reach the warehouse; the mirror follows source schema changes or stops that table clearly."""

from __future__ import annotations

import psycopg

import cdc_sync
from tests.mirror_check import assert_mirrored, mirror_query

SECRETS = ("hunter2-password", "extra-token-123", "variable-secret-value", "trigger-kwargs-secret")


def plant_secrets(source: str) -> None:
    with psycopg.connect(source, autocommit=True) as connection:
        connection.execute("INSERT INTO connection (conn_id, conn_type, host, login, password, extra, "
                           "is_encrypted, is_extra_encrypted) VALUES ('warehouse', 'postgres', 'db', 'etl', "
                           "'hunter2-password', '{\"token\": \"extra-token-123\"}', false, false)")
        connection.execute("INSERT INTO variable (key, val, is_encrypted) VALUES ('api', 'variable-secret-value', "
                           "false)")
        connection.execute("INSERT INTO trigger (classpath, kwargs, created_date) VALUES ('x.Trigger', "
                           "'{\"secret\": \"trigger-kwargs-secret\"}', now())")


def every_value(destination: str, schema: str) -> str:
    tables = mirror_query(destination, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                          (schema,))
    return "\n".join(str(mirror_query(destination, f'SELECT * FROM "{schema}"."{table}"')) for (table,) in tables)


def test_secret_columns_never_reach_the_warehouse_even_for_the_whole_database(
    airflow3_source: str, duckdb_destination: str
) -> None:
    plant_secrets(airflow3_source)
    report = cdc_sync.sync(airflow3_source, duckdb_destination, "whole", tables=[])
    assert report.ok, report.failed
    synced = {t.table for t in report.tables}
    assert {"connection", "variable", "trigger", "serialized_dag", "xcom"} <= synced
    dump = every_value(duckdb_destination, "whole")
    assert "warehouse" in dump  # the connection row itself is mirrored...
    for secret in SECRETS:
        assert secret not in dump  # ...but none of its secrets
    columns = {c for (c,) in mirror_query(duckdb_destination, "SELECT column_name FROM information_schema.columns "
                                          "WHERE table_schema = 'whole' AND table_name = 'connection'")}
    assert "password" not in columns and "extra" not in columns and "login" in columns


def test_a_secret_column_is_copied_only_when_asked_and_personal_data_can_be_hashed(
    airflow3_source: str, duckdb_destination: str
) -> None:
    plant_secrets(airflow3_source)
    cdc_sync.sync(airflow3_source, duckdb_destination, tables=["connection", "dag"],
                  include_columns=["connection.password"], hash_columns=["dag.owners"])
    assert mirror_query(duckdb_destination, 'SELECT password FROM "airflow"."connection"') == [("hunter2-password",)]
    owners = {o for (o,) in mirror_query(duckdb_destination, 'SELECT owners FROM "airflow"."dag"')}
    assert owners and all(len(o) == 64 and o != "data-team" for o in owners)


def test_new_source_column_is_added_and_filled(airflow3_source: str, destination: str) -> None:
    cdc_sync.sync(airflow3_source, destination, "drift")
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("ALTER TABLE dag_run ADD COLUMN team text")
        connection.execute("UPDATE dag_run SET team = 'data', updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__1'")
    report = {t.table: t for t in cdc_sync.sync(airflow3_source, destination, "drift").tables}
    assert any("team" in w and "resync" in w for w in report["dag_run"].warnings)
    assert mirror_query(destination, "SELECT team FROM \"drift\".\"dag_run\" WHERE run_id = 'scheduled__1'") == \
        [("data",)]
    cdc_sync.resync(airflow3_source, destination, "drift", only=["dag_run"])
    assert_mirrored(airflow3_source, destination, "drift", "dag_run", ["dag_id", "run_id"])


def test_type_change_the_mirror_cannot_hold_stops_only_that_table(airflow3_source: str, destination: str) -> None:
    cdc_sync.sync(airflow3_source, destination, "drift")
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("ALTER TABLE job ALTER COLUMN latest_heartbeat TYPE text")
    report = cdc_sync.sync(airflow3_source, destination, "drift", raise_on_failure=False)
    assert set(report.failed) == {"job"}
    assert "latest_heartbeat" in report.failed["job"] and "resync" in report.failed["job"]
    assert {t.table for t in report.tables if t.status == "ok"} >= {"dag", "dag_run", "task_instance"}
    errors = {w.table_name: w.last_error for w in cdc_sync.status(destination, "drift")}
    assert "latest_heartbeat" in errors["job"] and errors["dag"] is None


def test_a_schema_holding_another_sources_mirror_is_refused(airflow3_source: str, airflow3_template: str,
                                                            duckdb_destination: str) -> None:
    cdc_sync.sync(airflow3_source, duckdb_destination, tables=["dag"])
    other = airflow3_source.rsplit("/", 1)[0] + f"/{airflow3_template}"
    try:
        cdc_sync.sync(other, duckdb_destination, tables=["dag"])
    except cdc_sync.StateError as error:
        assert "another source" in str(error) and "--schema" in str(error)
    else:
        raise AssertionError("a second source was accepted into the same schema")
    assert cdc_sync.sync(other, duckdb_destination, tables=["dag"], allow_foreign_source=True).ok
