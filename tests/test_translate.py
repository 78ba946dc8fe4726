"""The translation boundary: every driver error class and SQLSTATE class is mapped, messages are one line with a
fix and no secret, bugs keep their traceback, and real servers' failures arrive translated."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import boto3.exceptions
import botocore.exceptions
import duckdb
import psycopg
import psycopg.errors
import pyarrow as pa
import pymysql
import pytest
import redshift_connector
import snowflake.connector.errors

from cdc_sync.errors import (
    CdcSyncError,
    SourceError,
    TerminalDestinationError,
    TransientDestinationError,
)
from cdc_sync.failure_kinds import (
    BOTOCORE_CLASSES,
    DBAPI_CLASSES,
    DUCKDB_CLASSES,
    SNOWFLAKE_CLASSES,
    SQLITE_CODES,
    SQLSTATE_CLASSES,
    kinds,
)
from cdc_sync.sources import open_source
from cdc_sync.translate import Boundary, classify
from cdc_sync.urls import make_url

SECRET = "pw-Zq81x"


def _exception_classes(module: object, root: type) -> list[type]:
    return [value for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, root) and value is not root]


def _instance(cls: type[BaseException]) -> BaseException:
    """An instance without the class's own constructor (some need a response or an operation name)."""
    error = cls.__new__(cls)
    BaseException.__init__(error)
    return error


@pytest.mark.parametrize(("module", "root", "table"), [
    (psycopg, psycopg.Error, DBAPI_CLASSES),
    (pymysql.err, pymysql.err.MySQLError, DBAPI_CLASSES),
    (redshift_connector.error, redshift_connector.error.Error, DBAPI_CLASSES),
    (sqlite3, sqlite3.Error, DBAPI_CLASSES),
    (duckdb, duckdb.Error, DUCKDB_CLASSES),
    (snowflake.connector.errors, snowflake.connector.errors.Error, SNOWFLAKE_CLASSES | DBAPI_CLASSES),
], ids=["psycopg", "pymysql", "redshift_connector", "sqlite3", "duckdb", "snowflake"])
def test_every_driver_error_class_has_a_kind_of_its_own(module: object, root: type, table: dict) -> None:
    """As httpx tests its httpcore mapping: a class that only the driver's root catches is a case we missed."""
    missed = [cls.__name__ for cls in _exception_classes(module, root)
              if not any(ancestor.__name__ in table for ancestor in cls.__mro__ if ancestor is not root)]
    assert missed == []
    for cls in _exception_classes(module, root):
        assert classify(_instance(cls)) is not None, cls


def test_every_sqlstate_class_and_sqlite_result_code_is_mapped() -> None:
    states = {cls.sqlstate for cls in _exception_classes(psycopg.errors, psycopg.Error) if cls.sqlstate}
    assert states, "psycopg's registry of SQLSTATEs was not found"
    assert sorted({state[:2] for state in states} - set(SQLSTATE_CLASSES)) == []
    # SQLite's primary result codes are 1 (SQLITE_ERROR) to 28 (SQLITE_WARNING); each needs an entry.
    mapped = {getattr(sqlite3, name) for name in SQLITE_CODES}
    assert sorted(set(range(1, 29)) - mapped) == []


def test_aws_errors_are_all_classified() -> None:
    for cls in _exception_classes(botocore.exceptions, botocore.exceptions.BotoCoreError):
        assert classify(_instance(cls)) is not None, cls
    for cls in _exception_classes(boto3.exceptions, boto3.exceptions.Boto3Error):
        assert classify(_instance(cls)) is not None, cls
    assert set(BOTOCORE_CLASSES) <= {cls.__name__ for cls in _exception_classes(botocore.exceptions, Exception)}
    denied = botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied"}}, "PutObject")
    assert classify(denied).kind is kinds.aws_refused  # type: ignore[union-attr]
    assert classify(botocore.exceptions.NoCredentialsError()).kind is kinds.aws_credentials  # type: ignore[union-attr]
    throttled = botocore.exceptions.ClientError({"Error": {"Code": "SlowDown"}}, "PutObject")
    assert classify(throttled).kind.transient  # type: ignore[union-attr]


@pytest.mark.parametrize(("error", "transient"), [
    (psycopg.errors.lookup("40001")("could not serialize access"), True),
    (psycopg.errors.lookup("55P03")("lock not available"), True),
    (psycopg.errors.lookup("57P01")("terminating connection"), True),
    (psycopg.errors.lookup("42501")("permission denied for schema airflow"), False),
    (psycopg.errors.lookup("22P02")("invalid input syntax"), False),
    (redshift_connector.error.ProgrammingError({"C": "08006", "M": "connection failure"}), True),
    (redshift_connector.error.ProgrammingError({"C": "42601", "M": "syntax error"}), False),
    (snowflake.connector.errors.ProgrammingError(msg="aborted", errno=625, sqlstate="57014"), True),
    (snowflake.connector.errors.ProgrammingError(msg="no table", errno=2003, sqlstate="42S02"), False),
    (duckdb.TransactionException("Conflict on tuple deletion"), True),
    (duckdb.CatalogException("Table does not exist"), False),
    (OSError(errno.ENOSPC, "No space left on device"), False),
    (ConnectionResetError(errno.ECONNRESET, "reset by peer"), True),
], ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value))
def test_warehouse_errors_are_transient_or_terminal_by_code(error: BaseException, transient: bool) -> None:
    boundary = Boundary("destination", "PostgreSQL", "postgresql://u:***@h/db")
    with pytest.raises(CdcSyncError) as raised, boundary.translating("running MERGE"):
        raise error
    assert type(raised.value) is (TransientDestinationError if transient else TerminalDestinationError)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("Running MERGE on the PostgreSQL destination")


def test_messages_are_one_line_with_the_fix_and_without_the_secrets() -> None:
    boundary = Boundary("source", "MySQL/MariaDB", "mysql://root:***@db/airflow", secrets=[SECRET])
    with pytest.raises(SourceError) as raised, boundary.translating("reading rows of dag_run"):
        raise pymysql.err.OperationalError(1045, f"Access denied for user 'root'\n(using password {SECRET})")
    message = str(raised.value)
    assert SECRET not in message and "\n" not in message
    assert "reading rows of dag_run".capitalize() in message and "MySQL error 1045" in message
    assert "Check the user, password, key or token of the source settings." in message


@pytest.mark.parametrize("bug", [TypeError("bad operand"), KeyError("x"), AttributeError("y"), AssertionError()])
def test_a_bug_crosses_the_boundary_untouched(bug: Exception) -> None:
    """cdc_sync's own mistakes keep their type, so their traceback reaches the user."""
    with pytest.raises(type(bug)), Boundary("source", "SQLite", "sqlite:///x").translating("reading"):
        raise bug


def test_arrow_conversion_errors_are_translated_not_bugs() -> None:
    with pytest.raises(SourceError, match="cannot be read as its declared type"), \
            Boundary("source", "SQLite", "sqlite:///x").translating("reading rows of dag"):
        pa.array(["2024-13-45"], pa.string()).cast(pa.date32())


def test_a_catalog_read_on_a_dropped_connection_arrives_translated(airflow3_source: str) -> None:
    """A real server's failure during a catalog read: the source's backend is terminated by another session."""
    url = make_url(airflow3_source).set(password=SECRET)
    with open_source(url) as source:
        pid = source.inner._connection.info.backend_pid
        with psycopg.connect(airflow3_source, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(SourceError) as raised:
            source.describe_tables(["dag", "dag_run"])
    message = str(raised.value)
    assert message.startswith("Reading the catalog on the PostgreSQL source") and SECRET not in message
    assert "Check that the server is running" in message


def test_duckdb_errors_of_a_real_file_arrive_translated(tmp_path: Path) -> None:
    from cdc_sync.destinations import open_destination
    from cdc_sync.destinations.dialect import Statement

    refused = r"Running SELECT on the DuckDB destination .*CatalogException"
    with open_destination(make_url(f"duckdb:///{tmp_path}/m.duckdb")) as destination, \
            pytest.raises(TerminalDestinationError, match=refused):
        destination.query(Statement("SELECT * FROM no_such_table"))


@pytest.mark.parametrize(("wrapper", "contract"), [
    ("cdc_sync.sources.boundary:TranslatedSource", "cdc_sync.sources.base:Source"),
    ("cdc_sync.sources.boundary:TranslatedSnapshot", "cdc_sync.sources.base:SourceSnapshot"),
    ("cdc_sync.destinations.boundary:TranslatedDestination", "cdc_sync.destinations.base:Destination"),
])
def test_the_boundary_wrappers_pass_every_call_of_the_contract_to_the_engine(wrapper: str, contract: str) -> None:
    """A method of the contract that a wrapper does not define itself runs the contract's default on the wrapper,
    never the engine's own version (an engine's key digest, its streaming reader), and outside the boundary."""
    import importlib

    def load(path: str) -> type:
        module, name = path.split(":")
        return getattr(importlib.import_module(module), name)

    wrapper_class, contract_class = load(wrapper), load(contract)
    inherited = [name for name, member in vars(contract_class).items()
                 if callable(member) and not name.startswith("_") and name not in vars(wrapper_class)
                 and name not in {"scalar", "ensure_schema", "renders_key"}]  # built on calls that are wrapped
    assert inherited == []
