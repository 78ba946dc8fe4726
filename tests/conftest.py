"""Shared fixtures: real PostgreSQL (and the real Airflow 3 schema in it), DuckDB files, fresh schemas.

In CI (CI=true) a database service that is not reachable fails the run; locally it skips the tests that need it.
"""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest

from tests.airflow_schema import PG_ADMIN, fill_airflow3, pg_airflow3_template, pg_execute, pg_recreate_database

IN_CI = os.environ.get("CI", "").lower() == "true"
# capture=auto reads the log of a PostgreSQL source with wal_level=logical, as the local one runs: the suite's
# cycles stay in the watermark mode unless a test asks for a mode (capture=...), so that no test leaves a replication
# slot behind by accident. Set before any test starts, so Airflow task processes and CLI runs inherit it.
os.environ["CDC_SYNC_CAPTURE"] = "query"


@pytest.fixture(autouse=True)
def whole_table_reads_through_adbc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every whole-table PostgreSQL read of the suite goes through ADBC (the path of large tables), not only those of
    heaps over the size threshold, which no test table reaches; filtered reads keep the CSV path."""
    import cdc_sync.sources.postgres as postgres_source

    monkeypatch.setattr(postgres_source, "ARROW_READ_MIN_BYTES", 0)


def require_service(name: str, check) -> None:
    try:
        check()
    except Exception as error:  # any failure to reach the service
        if IN_CI:
            pytest.fail(f"{name} is not reachable in CI: {error}")
        pytest.skip(f"{name} is not reachable: {error}")


@pytest.fixture(scope="session")
def postgres_available() -> None:
    require_service("PostgreSQL at 127.0.0.1:5432", lambda: psycopg.connect(PG_ADMIN, connect_timeout=3).close())


@pytest.fixture(scope="session")
def airflow3_template(postgres_available: None) -> str:
    return pg_airflow3_template()


@pytest.fixture
def airflow3_source(airflow3_template: str, request: pytest.FixtureRequest) -> str:
    """A fresh PostgreSQL database with the real Airflow 3 schema and scheduler-like rows; dropped afterwards."""
    name = f"cdc_src_{uuid.uuid4().hex[:10]}"
    url = pg_recreate_database(name, template=airflow3_template)
    fill_airflow3(url)
    yield url
    pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_destination(postgres_available: None) -> str:
    name = f"cdc_dst_{uuid.uuid4().hex[:10]}"
    url = pg_recreate_database(name)
    yield url
    pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def logical_decoding_available(postgres_available: None) -> None:
    """The local PostgreSQL runs with wal_level=logical (.ci/run sets it in CI)."""
    def check() -> None:
        with psycopg.connect(PG_ADMIN, connect_timeout=3) as connection:
            level = connection.execute("SHOW wal_level").fetchone()[0]
        if level != "logical":
            raise RuntimeError(f"wal_level is {level}, logical decoding needs wal_level=logical")

    require_service("PostgreSQL logical decoding", check)


def drop_slots(url: str) -> None:
    """Drop every replication slot of ``url``'s database: slots pin WAL for the whole server."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                           "WHERE database = current_database()")


@pytest.fixture
def logical_source(logical_decoding_available: None, airflow3_source: str) -> str:
    """An Airflow 3 source whose replication slots are dropped at teardown."""
    yield airflow3_source
    drop_slots(airflow3_source)


@pytest.fixture(scope="module")
def logical_database(logical_decoding_available: None) -> str:
    """A fresh, empty PostgreSQL database for logical decoding tests; returns its name.

    Replication slots pin WAL for the whole server, so every slot left in this database is dropped afterwards,
    whether the test passed or not (a database with slots cannot be dropped either)."""
    name = f"cdc_log_{uuid.uuid4().hex[:10]}"
    pg_recreate_database(name)
    yield name
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s",
                           (name,))
    pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def duckdb_destination(tmp_path) -> str:
    return f"duckdb:///{tmp_path / 'mirror.duckdb'}"


@pytest.fixture(params=["duckdb", "postgresql"])
def destination(request: pytest.FixtureRequest) -> str:
    """Every core scenario runs against both built-in destinations."""
    fixture = "duckdb_destination" if request.param == "duckdb" else "postgres_destination"
    return request.getfixturevalue(fixture)


@pytest.fixture(scope="session")
def mysql_available() -> None:
    from tests.airflow_schema import mysql_connect

    require_service("MariaDB/MySQL at 127.0.0.1:3306", lambda: mysql_connect(connect_timeout=3).close())


@pytest.fixture(scope="session")
def mysql_airflow3_template(mysql_available: None) -> str:
    from tests.airflow_schema import mysql_airflow3_template as build

    return build()


@pytest.fixture
def mysql_airflow3_source(mysql_airflow3_template: str) -> str:
    """A fresh MariaDB database with the real Airflow 3 schema and scheduler-like rows; dropped afterwards."""
    from tests.airflow_schema import fill_airflow3_mysql, mysql_copy_database, mysql_execute

    name = f"cdc_src_{uuid.uuid4().hex[:10]}"
    url = mysql_copy_database(mysql_airflow3_template, name)
    fill_airflow3_mysql(url)
    yield url
    mysql_execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="session")
def sqlite_airflow3_template(tmp_path_factory: pytest.TempPathFactory):
    from tests.airflow_schema import sqlite_airflow3_template as build

    return build(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture
def sqlite_airflow3_source(sqlite_airflow3_template, tmp_path) -> str:
    """A copy of the migrated SQLite Airflow 3 file, filled with scheduler-like rows; its URL."""
    import shutil

    from tests.airflow_schema import fill_airflow3_sqlite

    path = tmp_path / "airflow.db"
    shutil.copyfile(sqlite_airflow3_template, path)
    fill_airflow3_sqlite(path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def airflow2_available() -> None:
    """The Airflow 2.11 environment (tests/airflow2_env.sh); in CI its absence fails the run."""
    from tests.airflow_schema import AIRFLOW2_BIN

    def check() -> None:
        if not AIRFLOW2_BIN.exists():
            raise FileNotFoundError(f"no Airflow 2.11 environment at {AIRFLOW2_BIN.parent.parent}: create it with "
                                    "bash tests/airflow2_env.sh")

    require_service("Airflow 2.11", check)


@pytest.fixture(scope="session")
def pg_airflow2_template(postgres_available: None, airflow2_available: None) -> str:
    from tests.airflow_schema import pg_airflow2_template as build

    return build()


@pytest.fixture
def pg_airflow2_source(pg_airflow2_template: str) -> str:
    """A fresh PostgreSQL database with the real Airflow 2.11 schema and 2.x-shaped rows; dropped afterwards."""
    from tests.airflow_schema import fill_airflow2_postgres

    name = f"cdc_src2_{uuid.uuid4().hex[:10]}"
    url = pg_recreate_database(name, template=pg_airflow2_template)
    fill_airflow2_postgres(url)
    yield url
    pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def mysql_airflow2_source(mysql_available: None, airflow2_available: None) -> str:
    """A fresh MariaDB database with the real Airflow 2.11 schema and 2.x-shaped rows; dropped afterwards."""
    from tests.airflow_schema import fill_airflow2_mysql, mysql_airflow2_template, mysql_copy_database, mysql_execute

    name = f"cdc_src2_{uuid.uuid4().hex[:10]}"
    url = mysql_copy_database(mysql_airflow2_template(), name)
    fill_airflow2_mysql(url)
    yield url
    mysql_execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="session")
def sqlite_airflow2_template(airflow2_available: None, tmp_path_factory: pytest.TempPathFactory):
    from tests.airflow_schema import sqlite_airflow2_template as build

    return build(tmp_path_factory.mktemp("sqlite2-template"))


@pytest.fixture
def sqlite_airflow2_source(sqlite_airflow2_template, tmp_path) -> str:
    """A copy of the migrated SQLite Airflow 2.11 file, filled with 2.x-shaped rows; its URL."""
    import shutil

    from tests.airflow_schema import fill_airflow2_sqlite

    path = tmp_path / "airflow2.db"
    shutil.copyfile(sqlite_airflow2_template, path)
    fill_airflow2_sqlite(path)
    return f"sqlite:///{path}"
