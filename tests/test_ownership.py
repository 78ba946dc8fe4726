"""cdc_sync touches only what it owns: warehouse tables it did not create are refused and left as they are, and
a source that is not an Airflow metadata database is refused before anything is written."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from pathlib import Path

import duckdb
import psycopg
import pytest
from click.testing import CliRunner

import cdc_sync
from cdc_sync.cli import main
from cdc_sync.errors import ConfigError, ForeignTableError, NotAnAirflowDatabaseError, StateError
from cdc_sync.ownership import created_by_cdc_sync
from cdc_sync.state import Watermark
from cdc_sync.urls import make_url
from tests.airflow_schema import mysql_execute, pg_execute, pg_recreate_database
from tests.mirror_check import mirror_query
from tests.test_snowflake import SCHEMA as SNOWFLAKE_SCHEMA
from tests.test_snowflake import snowflake_url  # noqa: F401  (the fakesnow fixture)

FOREIGN_ROWS = [("dag_1", "team-a"), ("not_in_airflow", "team-b")]


# --- A warehouse table cdc_sync did not create ----------------------------------------------------------------


class Warehouse:
    """Plain SQL on the test warehouse, through each one's own driver, the way a team would make its own table."""

    def __init__(self, kind: str, url: str, schema: str) -> None:
        self.kind, self.url, self.schema = kind, url, schema

    def run(self, sql: str) -> list[tuple]:
        if self.kind == "duckdb":
            with duckdb.connect(make_url(self.url).database) as connection:
                return connection.execute(sql).fetchall()
        if self.kind == "postgresql":
            with psycopg.connect(self.url, autocommit=True) as connection:
                cursor = connection.execute(sql)
                return cursor.fetchall() if cursor.description else []
        import snowflake.connector

        database = make_url(self.url).database
        with snowflake.connector.connect(account="acct", user="cdc", password="secret", database=database) as conn:
            cursor = conn.cursor()
            cursor.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def create_foreign_dag_table(self) -> None:
        self.run(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        self.run(f'CREATE TABLE "{self.schema}".dag (dag_id VARCHAR, owner_team VARCHAR)')
        values = ", ".join(f"('{dag_id}', '{team}')" for dag_id, team in FOREIGN_ROWS)
        self.run(f'INSERT INTO "{self.schema}".dag VALUES {values}')

    def dag_table(self) -> tuple[list[str], list[tuple]]:
        columns = [row[0].lower() for row in self.run(
            "SELECT column_name FROM information_schema.columns "
            f"WHERE table_schema = '{self.schema}' AND lower(table_name) = 'dag' ORDER BY ordinal_position")]
        return columns, sorted(self.run(f'SELECT * FROM "{self.schema}".dag'))


@pytest.fixture(params=["duckdb", "postgresql", "snowflake"])
def warehouse(request: pytest.FixtureRequest) -> Warehouse:
    if request.param == "duckdb":
        return Warehouse("duckdb", request.getfixturevalue("duckdb_destination"), "airflow")
    if request.param == "postgresql":
        return Warehouse("postgresql", request.getfixturevalue("postgres_destination"), "airflow")
    url, _sent = request.getfixturevalue("snowflake_url")
    return Warehouse("snowflake", url, SNOWFLAKE_SCHEMA)


def test_a_table_cdc_sync_did_not_create_is_refused_and_left_untouched(airflow3_source: str,
                                                                       warehouse: Warehouse) -> None:
    warehouse.create_foreign_dag_table()
    before = warehouse.dag_table()
    for cycle in range(2):  # the refusal leaves no state behind, so the next cycle does not adopt the table
        report = cdc_sync.sync(airflow3_source, warehouse.url, warehouse.schema, tables=["dag", "dag_run"],
                               deletes="hard", raise_on_failure=False)
        assert report.failed.keys() == {"dag"}
        error = report.failed["dag"]
        assert f"{warehouse.schema}.dag already exists" in error and "another schema" in error
        assert next(t for t in report.tables if t.table == "dag_run").rows_written == (50 if cycle == 0 else 0)
        assert warehouse.dag_table() == before  # no column added, no row deleted
    assert [w.table_name for w in cdc_sync.status(warehouse.url, warehouse.schema)] == ["dag_run"]


def test_a_mirror_whose_state_was_lost_is_still_adopted_by_its_columns(airflow3_source: str,
                                                                        duckdb_destination: str) -> None:
    assert cdc_sync.sync(airflow3_source, duckdb_destination, tables=["dag"]).ok
    with duckdb.connect(make_url(duckdb_destination).database) as connection:
        for table in ("_cdc_watermarks", "_cdc_runs", "_cdc_meta", "_cdc_migrations"):
            connection.execute(f"DROP TABLE airflow.{table}")
    report = cdc_sync.sync(airflow3_source, duckdb_destination, tables=["dag"])
    assert report.ok and report.tables[0].rows_read == 5


def test_what_makes_a_warehouse_table_a_mirror() -> None:
    committed = Watermark("dag", "full", last_success_at=dt.datetime.now(dt.UTC))
    only_failed = Watermark("dag", "full", last_error="boom")
    assert created_by_cdc_sync(committed, ["dag_id"])
    assert created_by_cdc_sync(None, ["dag_id", "_cdc_synced_at", "_cdc_deleted_at"])
    assert not created_by_cdc_sync(only_failed, ["dag_id"])
    assert not created_by_cdc_sync(None, ["dag_id", "_cdc_synced_at"])
    assert issubclass(ForeignTableError, ConfigError)


# --- A source that is not an Airflow metadata database ----------------------------------------------------------


@pytest.fixture
def postgres_team_database(postgres_available: None) -> str:
    """A PostgreSQL database of a team's own, with a ``dag`` table and another application's Alembic revision."""
    name = f"cdc_team_{uuid.uuid4().hex[:10]}"
    url = pg_recreate_database(name)
    pg_execute("CREATE TABLE dag (dag_id text PRIMARY KEY); CREATE TABLE alembic_version (version_num text);"
               "INSERT INTO alembic_version VALUES ('1a2b3c4d5e6f')", name)
    yield url
    pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _schema_exists(destination: str, schema: str) -> bool:
    return mirror_query(destination, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
                        (schema,)) == [(1,)]


def test_a_postgres_database_that_is_not_airflow_claims_nothing(postgres_team_database: str,
                                                                 postgres_destination: str,
                                                                 airflow3_source: str) -> None:
    with pytest.raises(NotAnAirflowDatabaseError) as refused:
        cdc_sync.sync(postgres_team_database, postgres_destination, "mirror")
    message = str(refused.value)
    assert "is not an Airflow metadata database" in message and "dag_run, task_instance" in message
    assert "(schema public)" in message and "?schema=NAME" in message
    assert not _schema_exists(postgres_destination, "mirror")  # no schema, no state tables, no claim
    assert cdc_sync.sync(airflow3_source, postgres_destination, "mirror").ok  # the real source is not refused


def test_a_mariadb_database_that_is_not_airflow_is_refused_and_schema_names_the_database(
    mysql_airflow3_source: str, tmp_path: Path
) -> None:
    team = f"cdc_team_{uuid.uuid4().hex[:10]}"
    mysql_execute(f"CREATE DATABASE `{team}`")
    try:
        mysql_execute("CREATE TABLE task_instance (id int PRIMARY KEY)", database=team)
        team_url = mysql_airflow3_source.replace(make_url(mysql_airflow3_source).database, team)
        mirror = tmp_path / "m.duckdb"
        with pytest.raises(NotAnAirflowDatabaseError, match=rf"/{team} is not an Airflow .*lacks alembic_version, dag, "
                                                            r"dag_run, which.*\?schema=NAME"):
            cdc_sync.sync(team_url, f"duckdb:///{mirror}")
        assert not mirror.exists()
        # MySQL's schemas are its databases: ?schema= reads Airflow's database through the same URL.
        airflow_database = make_url(mysql_airflow3_source).database
        report = cdc_sync.sync(f"{team_url}?schema={airflow_database}", f"duckdb:///{mirror}", tables=["dag_run"])
        assert report.ok and report.tables[0].rows_written == 50
    finally:
        mysql_execute(f"DROP DATABASE IF EXISTS `{team}`")


def test_an_sqlite_file_that_is_not_airflow_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT)")
    mirror = tmp_path / "m.duckdb"
    result = CliRunner().invoke(main, ["run", "--source", f"sqlite:///{path}", "--destination",
                                       f"duckdb:///{mirror}"])
    assert result.exit_code == 2, result.output
    assert "is not an Airflow metadata database" in result.output and "Traceback" not in result.output
    assert not mirror.exists()
    with pytest.raises(ConfigError, match="SQLite has no schemas"):
        cdc_sync.sync(f"sqlite:///{path}?schema=airflow", f"duckdb:///{mirror}")


def test_an_airflow_revision_newer_than_any_known_is_accepted(sqlite_airflow3_source: str, tmp_path: Path) -> None:
    with sqlite3.connect(make_url(sqlite_airflow3_source).database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    assert cdc_sync.sync(sqlite_airflow3_source, f"duckdb:///{tmp_path}/m.duckdb", tables=["dag_run"]).ok


# --- Airflow's tables in a schema of their own (PostgreSQL) ------------------------------------------------------


@pytest.fixture
def airflow_in_own_schema(airflow3_source: str) -> str:
    """The Airflow 3 source with its tables moved out of ``search_path`` into schema ``airflow_meta``."""
    pg_execute("ALTER SCHEMA public RENAME TO airflow_meta; CREATE SCHEMA public", make_url(airflow3_source).database)
    return airflow3_source


def _source_count(source: str, table: str) -> int:
    with psycopg.connect(source) as connection:
        return connection.execute(f"SELECT count(*) FROM airflow_meta.{table}").fetchone()[0]


def test_airflow_tables_outside_search_path_are_refused_with_a_hint_and_mirrored_when_named(
    airflow_in_own_schema: str, duckdb_destination: str
) -> None:
    source = airflow_in_own_schema
    with pytest.raises(NotAnAirflowDatabaseError, match=r"\(schema public\).*add \?schema=NAME to the source URL"):
        cdc_sync.sync(source, duckdb_destination)
    assert not Path(make_url(duckdb_destination).database).exists()
    with pytest.raises(ConfigError, match=r"Schema 'nope' .* does not exist"):
        cdc_sync.sync(f"{source}?schema=nope", duckdb_destination)
    report = cdc_sync.sync(f"{source}?schema=airflow_meta", duckdb_destination)
    assert report.ok, report.failed
    for table in ("dag_run", "task_instance", "job"):
        assert mirror_query(duckdb_destination, f"SELECT count(*) FROM airflow.{table}") == \
            [(_source_count(source, table),)]
    with psycopg.connect(source, autocommit=True) as connection:
        connection.execute("UPDATE airflow_meta.dag_run SET state = 'failed', updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__9'")
    again = cdc_sync.sync(f"{source}?schema=airflow_meta", duckdb_destination, tables=["dag_run"])
    assert again.ok and again.tables[0].rows_written == 1
    # Another Airflow environment in another schema of the same database is another source.
    pg_execute("CREATE SCHEMA airflow_b; " + "; ".join(
        f"CREATE TABLE airflow_b.{table} (LIKE airflow_meta.{table} INCLUDING ALL)"
        for table in ("alembic_version", "dag", "dag_run", "task_instance")), make_url(source).database)
    with pytest.raises(StateError, match=r"already mirrors another source .*\?schema=airflow_meta"):
        cdc_sync.sync(f"{source}?schema=airflow_b", duckdb_destination, tables=["dag_run"])


def test_the_operator_names_the_source_schema(airflow_in_own_schema: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("airflow")
    from cdc_sync.airflow.operator import AirflowDbSyncOperator

    monkeypatch.setenv("AIRFLOW_CONN_MAIN", f'{{"conn_type": "duckdb", "host": "{tmp_path / "m.duckdb"}"}}')
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_DB", airflow_in_own_schema)
    operator = AirflowDbSyncOperator(task_id="sync", db_type="duckdb", connection_id="main",
                                     source_schema="airflow_meta", tables=["dag_run"])
    summary = operator.run_cycle(None)
    assert summary["ok"] and summary["tables"]["dag_run"]["rows_written"] == 50
    with pytest.raises(ConfigError, match="source_schema=''"):
        AirflowDbSyncOperator(task_id="bad", db_type="duckdb", connection_id="main", source_schema="")
