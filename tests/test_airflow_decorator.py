"""The Airflow decorator: provider registration, connection parsing, bad input, and real DAG runs on Airflow 3
(real task runner, ORM blocked) and Airflow 2.11 (its own virtual environment)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.airflow_run import AIRFLOW3_BIN, run_under_task_isolation
from tests.airflow_schema import PG_URL, airflow_migrate, pg_execute, pg_recreate_database
from tests.conftest import IN_CI
from tests.mirror_check import mirror_query

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "tests" / "dags"
AIRFLOW2_VENV = Path(os.environ.get("CDC_SYNC_AIRFLOW2_VENV", REPO / ".venv-airflow2"))
SEED_DAG_ID = "seed_airflow_db_sync"
SEED_TASK_ID = "sync_airflow_db"
# Trust auth ignores these passwords, so the runs succeed; the tests then look for them in every log.
DESTINATION_SECRET = "Dst-S3cret-d41d8cd9"
SOURCE_SECRET = "Src-S3cret-8f00b204"


def _connection(**fields):
    from airflow.models.connection import Connection

    extra = fields.pop("extra", None)
    return Connection(conn_id=fields.pop("conn_id", "main"), extra=json.dumps(extra) if extra else None, **fields)


def _mapping(**fields):
    from cdc_sync.airflow.connections import connection_mapping

    return connection_mapping(_connection(**fields))


# --- Registration ---------------------------------------------------------------------------------------------


def test_decorator_resolves_from_airflow_sdk_task_under_both_names():
    from airflow.sdk import task

    from cdc_sync.airflow.decorator import airflow_db_sync_task

    assert task.datacoves_airflow_db_sync is airflow_db_sync_task
    assert task.airflow_db_sync is airflow_db_sync_task


def test_provider_package_name_is_the_distribution_name():
    from importlib.metadata import distribution

    from cdc_sync.airflow.provider import get_provider_info

    info = get_provider_info()
    assert info["package-name"] == distribution("cdc-sync").metadata["Name"]
    assert {d["name"] for d in info["task-decorators"]} == {"datacoves_airflow_db_sync", "airflow_db_sync"}


def test_airflow_providers_list_shows_the_package(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    result = subprocess.run([str(AIRFLOW3_BIN), "providers", "list", "-o", "json"], env=env, capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    packages = {entry["package_name"] for entry in json.loads(result.stdout[result.stdout.index("["):])}
    assert "cdc-sync" in packages


# --- Connections as the official providers store them ---------------------------------------------------------


def _rsa_key_pem(passphrase: bytes | None):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return pem, der


def test_snowflake_connection_with_json_extras():
    from cdc_sync.airflow.connections import destination_settings

    url, options = destination_settings("snowflake", _mapping(
        conn_type="snowflake", login="loader", password="pw-123456", schema="PUBLIC",
        extra={"account": "xy12345.eu-west-1", "warehouse": "LOAD_WH", "database": "ANALYTICS", "role": "LOADER"}))
    assert (url.drivername, url.host, url.database, url.username) == \
        ("snowflake", "xy12345.eu-west-1", "ANALYTICS", "loader")
    assert dict(url.query) == {"warehouse": "LOAD_WH", "role": "LOADER"}
    assert url.password is None and options["password"] == "pw-123456", "secrets travel in the options"


def test_snowflake_connection_with_legacy_prefixed_extras_and_private_key_content():
    from cdc_sync.airflow.connections import destination_settings
    from cdc_sync.destinations.snowflake_settings import load_private_key

    pem, der = _rsa_key_pem(b"key-passphrase")
    url, options = destination_settings("snowflake", _mapping(
        conn_type="snowflake", login="loader", password="key-passphrase",
        extra={"extra__snowflake__account": "ab12345", "extra__snowflake__database": "RAW",
               "extra__snowflake__warehouse": "WH", "extra__snowflake__private_key_content": pem.decode()}))
    assert (url.host, url.database, dict(url.query)["warehouse"]) == ("ab12345", "RAW", "WH")
    assert "password" not in options, "with a key, the password is the key's passphrase"
    assert load_private_key(options["private_key_content"], options["private_key_passphrase"]) == der


def test_snowflake_private_key_file(tmp_path):
    from cdc_sync.airflow.connections import destination_settings

    key_file = tmp_path / "rsa_key.p8"
    key_file.write_bytes(_rsa_key_pem(None)[0])
    _, options = destination_settings("snowflake", _mapping(
        conn_type="snowflake", login="u", extra={"account": "ab12345", "database": "RAW",
                                                 "private_key_file": str(key_file)}))
    assert options["private_key_file"] == str(key_file)


def test_snowflake_connection_without_account_names_the_fix():
    from cdc_sync.airflow.connections import destination_settings
    from cdc_sync.errors import ConfigError

    with pytest.raises(ConfigError, match=r"extra\.account"):
        destination_settings("snowflake", _mapping(conn_type="snowflake", login="u", password="pw-123456",
                                                   extra={"database": "RAW"}))


def test_redshift_connection_as_the_amazon_provider_stores_it():
    from cdc_sync.airflow.connections import destination_settings

    url, options = destination_settings("redshift", _mapping(
        conn_type="redshift", host="cluster.abc.us-west-2.redshift.amazonaws.com", login="awsuser",
        password="pw-123456", schema="dev",
        extra={"iam": True, "cluster_identifier": "cluster", "extra__redshift__region": "us-west-2",
               "region": "us-east-1", "aws_conn_id": "aws_default"}))
    assert (url.drivername, url.host, url.port, url.database) == \
        ("redshift", "cluster.abc.us-west-2.redshift.amazonaws.com", 5439, "dev")
    assert options == {"iam": True, "cluster_identifier": "cluster", "region": "us-east-1", "password": "pw-123456"}
    assert url.password is None


def test_postgres_and_duckdb_connections():
    from cdc_sync.airflow.connections import destination_settings, source_url_from_connection

    mapping = _mapping(conn_type="postgres", host="db", port=5433, login="u", password="pw-123456",
                       schema="warehouse", extra={"sslmode": "require", "cursor": "dictcursor"})
    url, _ = destination_settings("postgresql", mapping)
    assert (url.drivername, url.port, url.database, dict(url.query)) == \
        ("postgresql", 5433, "warehouse", {"sslmode": "require"})
    assert source_url_from_connection(mapping).database == "warehouse"
    url, _ = destination_settings("duckdb", _mapping(conn_type="duckdb", host="/data/mirror.duckdb"))
    assert str(url) == "duckdb:////data/mirror.duckdb"


def test_a_warehouse_connection_cannot_be_the_source():
    from cdc_sync.airflow.connections import source_url_from_connection
    from cdc_sync.errors import ConfigError

    with pytest.raises(ConfigError, match="metadata database"):
        source_url_from_connection(_mapping(conn_id="airflow_db", conn_type="snowflake"))


# --- Parse time, defaults, bad input --------------------------------------------------------------------------


def _build_dag(**decorator_kwargs):
    from airflow.sdk import dag, task

    @dag(dag_id=f"d_{uuid.uuid4().hex[:8]}", schedule=None)
    def the_dag():
        @task.datacoves_airflow_db_sync(**decorator_kwargs)
        def sync_airflow_db():
            pass

        sync_airflow_db()

    return the_dag()


def test_parsing_with_valid_arguments_does_no_database_work():
    # Neither the connection nor the source exists; a database would be touched only if parsing connected.
    started = time.monotonic()
    dag = _build_dag(db_type="snowflake", connection_id="absent", source_url="postgresql://u@192.0.2.1:1/x",
                     additional_tables=["xcom"], retries=3, pool="sync_pool", task_id="mirror")
    assert time.monotonic() - started < 2
    task = dag.get_task("mirror")
    assert (task.retries, task.pool, task.db_type) == (3, "sync_pool", "snowflake")
    assert "cdc-sync://airflow/xcom" in {asset.uri for asset in task.outlets}


def test_invalid_db_type_fails_when_the_dag_is_parsed():
    from cdc_sync.errors import ConfigError

    with pytest.raises(ConfigError, match=r"db_type='oracle' is not supported: use one of snowflake, redshift"):
        _build_dag(db_type="oracle", connection_id="main")


def test_default_schema_from_environment_slug_or_base_url(monkeypatch):
    from cdc_sync.airflow.naming import default_destination_schema

    monkeypatch.setenv("DATACOVES__ENVIRONMENT_SLUG", "Dev123")
    assert default_destination_schema() == "airflow-dev123"
    monkeypatch.delenv("DATACOVES__ENVIRONMENT_SLUG")
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://prd456.datacoves.example.com/airflow")
    assert default_destination_schema() == "airflow-prd456"
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://localhost:8080")
    assert default_destination_schema() == "airflow"


def test_fan_out_lists_the_tables_without_a_database():
    from cdc_sync import DEFAULT_TABLES
    from cdc_sync.airflow.decorator import tables_to_fan_out
    from cdc_sync.errors import ConfigError

    assert tables_to_fan_out(additional_tables=["xcom", "dag"]) == [*DEFAULT_TABLES, "xcom"]
    assert tables_to_fan_out(tables=["dag_run"]) == ["dag_run"]
    with pytest.raises(ConfigError):
        tables_to_fan_out(tables=[])


def _operator(**kwargs):
    from cdc_sync.airflow.operator import AirflowDbSyncOperator

    return AirflowDbSyncOperator(task_id=f"t_{uuid.uuid4().hex[:6]}", **kwargs)


def test_unknown_connection_fails_at_once_naming_the_connection(monkeypatch, airflow3_source):
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_DB", airflow3_source)
    with pytest.raises(AirflowFailException, match=r"connection 'no_such_warehouse' .* does not exist"):
        _operator(db_type="postgres", connection_id="no_such_warehouse").run_cycle(None)


def test_missing_source_says_which_connection_to_create(monkeypatch, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("AIRFLOW_CONN_MAIN", json.dumps({"conn_type": "duckdb", "host": str(tmp_path / "m.db")}))
    with pytest.raises(AirflowFailException, match=r"connection 'airflow_db' .*AIRFLOW_CONN_AIRFLOW_DB="):
        _operator(db_type="duckdb", connection_id="main").run_cycle(None)


def test_nonexistent_table_fails_at_once_and_writes_nothing(monkeypatch, airflow3_source, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    mirror = tmp_path / "m.duckdb"
    monkeypatch.setenv("AIRFLOW_CONN_MAIN", json.dumps({"conn_type": "duckdb", "host": str(mirror)}))
    operator = _operator(db_type="duckdb", connection_id="main", source_url=airflow3_source,
                         additional_tables=["no_such_table"])
    with pytest.raises(AirflowFailException, match="no_such_table"):
        operator.run_cycle(None)
    assert not mirror.exists()


def test_function_overrides_and_outlets_of_one_run(monkeypatch, airflow3_source, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("AIRFLOW_CONN_MAIN", json.dumps({"conn_type": "duckdb", "host": str(tmp_path / "m.db")}))
    operator = _operator(db_type="duckdb", connection_id="main", source_url=airflow3_source,
                         destination_schema="mirror")
    summary = operator.run_cycle({"tables": ["dag_run"]})
    assert summary["ok"] and set(summary["tables"]) == {"dag_run"}
    assert summary["tables"]["dag_run"]["rows_written"] == 50
    assert [asset.uri for asset in operator.outlets] == ["cdc-sync://mirror/dag_run"]
    json.dumps(summary)  # the XCom is JSON
    with pytest.raises(AirflowFailException, match="unknown option"):
        operator.run_cycle({"destination_schema": "elsewhere"})
    with pytest.raises(AirflowFailException, match="return None or a dict"):
        operator.run_cycle(["dag_run"])


def test_the_task_log_gets_the_plain_progress_lines(monkeypatch, sqlite_airflow3_source, tmp_path):
    import cdc_sync.progress

    monkeypatch.setattr(cdc_sync.progress, "LINE_INTERVAL_SECONDS", 0.0)  # a line per batch, not every 10 s
    monkeypatch.setenv("AIRFLOW_CONN_MAIN", json.dumps({"conn_type": "duckdb", "host": str(tmp_path / "m.db")}))
    operator = _operator(db_type="duckdb", connection_id="main", source_url=sqlite_airflow3_source)
    logged: list[str] = []
    monkeypatch.setattr(operator.log, "info", lambda message, *args: logged.append(message % args))
    assert operator.run_cycle({"tables": ["dag_run"]})["ok"]
    assert "dag_run: read 50 of ~50 rows (100%)" in "\n".join(logged)
    assert any(line.startswith("dag_run: read 50 rows in ") for line in logged)



def test_the_warehouse_connections_hash_key_keys_the_digest_and_reaches_no_driver(monkeypatch, tmp_path,
                                                                                 sqlite_airflow3_source):
    import hashlib
    import hmac
    import sqlite3

    from cdc_sync.airflow.connections import destination_settings

    key = "connection-extra-hash-key-1"
    _, options = destination_settings("redshift", _mapping(conn_type="redshift", host="h", login="u",
                                                           password="pw-123456", extra={"hash_key": key}))
    assert "hash_key" not in options
    source = sqlite_airflow3_source.removeprefix("sqlite:///")  # an Airflow 3 database without FAB's ab_user
    with sqlite3.connect(source) as connection:
        connection.execute("DROP TABLE IF EXISTS ab_user")
        connection.execute("CREATE TABLE ab_user (id INTEGER PRIMARY KEY, email TEXT)")
        connection.execute("INSERT INTO ab_user VALUES (1, 'ada@example.com')")
    mirror = tmp_path / "m.duckdb"
    monkeypatch.delenv("CDC_SYNC_HASH_KEY", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_MAIN", json.dumps({"conn_type": "duckdb", "host": str(mirror),
                                                        "extra": {"hash_key": key}}))
    _operator(db_type="duckdb", connection_id="main", source_url=f"sqlite:///{source}", tables=["ab_user"],
              hash_columns=["ab_user.email"], destination_schema="mirror").run_cycle(None)
    assert mirror_query(f"duckdb:///{mirror}", 'SELECT email FROM "mirror"."ab_user"') == \
        [(hmac.new(key.encode(), b"ada@example.com", hashlib.sha256).hexdigest(),)]


def test_verify_option_fails_on_a_mirror_that_is_not_exact_and_fix_repairs_it(monkeypatch, airflow3_source,
                                                                               tmp_path):
    import duckdb
    from airflow.sdk.exceptions import AirflowFailException

    from cdc_sync.errors import ConfigError

    with pytest.raises(ConfigError, match="verify"):
        _operator(db_type="duckdb", connection_id="main", verify="weekly")
    mirror = tmp_path / "m.duckdb"
    monkeypatch.setenv("AIRFLOW_CONN_MAIN", json.dumps({"conn_type": "duckdb", "host": str(mirror)}))
    options = {"db_type": "duckdb", "connection_id": "main", "source_url": airflow3_source,
               "destination_schema": "mirror", "tables": ["dag_run"]}
    summary = _operator(**options, verify=True).run_cycle(None)
    assert summary["verify"]["exact"] and summary["verify"]["tables"][0]["source_rows"] == 50
    json.dumps(summary, default=str)  # the XCom is JSON
    with duckdb.connect(str(mirror)) as connection:
        connection.execute("DELETE FROM mirror.dag_run WHERE run_id = 'scheduled__3'")
    with pytest.raises(AirflowFailException, match=r"not exact: dag_run: 1 missing"):
        _operator(**options, verify=True).run_cycle(None)
    repaired = _operator(**options, verify="fix").run_cycle(None)
    assert repaired["verify"]["tables"][0]["repaired"] and repaired["verify"]["exact"]
    assert _operator(**options, verify=True).run_cycle(None)["verify"]["tables"][0]["exact"]


# --- Real runs ------------------------------------------------------------------------------------------------


@pytest.fixture
def run_databases(postgres_available):
    """A metadata database and a warehouse database, dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    names = {"metadata": f"cdc_af_meta_{suffix}", "warehouse": f"cdc_af_dst_{suffix}"}
    yield names
    for name in names.values():
        pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_password(url: str, secret: str) -> str:
    return url.replace("postgres@", f"postgres:{secret}@")


def _run_env(home: Path, names: dict[str, str], metadata_driver: str) -> dict[str, str]:
    metadata_url = PG_URL.format(database=names["metadata"])
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "CDC_SYNC"))},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url.replace("postgresql://", f"postgresql+{metadata_driver}://"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_MAIN": _with_password(PG_URL.format(database=names["warehouse"]), DESTINATION_SECRET),
    }


def _assert_run_mirrored(names: dict[str, str], logs: str) -> None:
    """The warehouse holds the dag_run and task_instance rows of the run that did the syncing."""
    with psycopg.connect(PG_URL.format(database=names["metadata"])) as metadata:
        run_ids = [row[0] for row in metadata.execute("SELECT run_id FROM dag_run WHERE dag_id = %s",
                                                       (SEED_DAG_ID,))]
    assert len(run_ids) == 1
    with psycopg.connect(PG_URL.format(database=names["warehouse"])) as warehouse:
        runs = warehouse.execute("SELECT run_id FROM airflow_dev.dag_run WHERE dag_id = %s", (SEED_DAG_ID,))
        assert [row[0] for row in runs] == run_ids
        tasks = warehouse.execute("SELECT task_id, run_id FROM airflow_dev.task_instance WHERE dag_id = %s",
                                  (SEED_DAG_ID,))
        assert tasks.fetchall() == [(SEED_TASK_ID, run_ids[0])]
    assert "dag_run" in logs and "incremental" in logs, "per-table strategy is logged"
    for secret in (DESTINATION_SECRET, SOURCE_SECRET):
        assert secret not in logs


def _all_logs(home: Path, *outputs: str) -> str:
    """Task log files (Airflow 3 writes them; Airflow 2's `dags test` logs to its output) and process output."""
    files = [path.read_text(errors="replace") for path in (home / "logs").rglob("*.log")]
    return "\n".join([*files, *outputs])


@pytest.mark.slow
def test_seed_dag_under_airflow3_task_isolation(run_databases, airflow3_template, tmp_path):
    names = run_databases
    pg_recreate_database(names["metadata"], template=airflow3_template)  # = a fresh `airflow db migrate`
    pg_recreate_database(names["warehouse"])
    returncode, output = run_under_task_isolation(_run_env(tmp_path, names, "psycopg"), tmp_path, SEED_DAG_ID, {
        "AIRFLOW_CONN_AIRFLOW_DB": _with_password(PG_URL.format(database=names["metadata"]), SOURCE_SECRET),
    })
    assert returncode in (0, None), output[-4000:]
    logs = _all_logs(tmp_path, output)
    assert list((tmp_path / "logs").rglob("*.log")), "the task wrote no log file"
    # The task really ran isolated: in a supervised process, under the task runner.
    assert "task_runner.py" in logs and "final_state=success" in logs, output[-4000:]
    _assert_run_mirrored(names, logs)
    with psycopg.connect(PG_URL.format(database=names["metadata"])) as metadata:
        published = {row[0] for row in metadata.execute(
            "SELECT a.uri FROM asset_event e JOIN asset a ON a.id = e.asset_id")}
    assert "cdc-sync://airflow_dev/dag_run" in published
    assert "cdc-sync://airflow_dev/task_fail" not in published, "a table absent on Airflow 3 publishes nothing"


@pytest.mark.slow
@pytest.mark.airflow2
def test_seed_dag_on_airflow2(run_databases, tmp_path):
    airflow_bin = AIRFLOW2_VENV / "bin" / "airflow"
    if not airflow_bin.exists():
        message = f"no Airflow 2.11 environment at {AIRFLOW2_VENV}: create it with tests/airflow2_env.sh"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    names = run_databases
    pg_recreate_database(names["metadata"])
    pg_recreate_database(names["warehouse"])
    env = _run_env(tmp_path, names, "psycopg2")
    # No airflow_db connection: on Airflow 2 the configured metadata database is the fallback source.
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = _with_password(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
                                                                SOURCE_SECRET)
    airflow_migrate(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], airflow_bin=str(airflow_bin))
    result = subprocess.run([str(airflow_bin), "dags", "test", SEED_DAG_ID], env=env, capture_output=True,
                            text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    _assert_run_mirrored(names, _all_logs(tmp_path, output))
    resolved = subprocess.run(
        [str(AIRFLOW2_VENV / "bin" / "python"), "-c",
         "from airflow.decorators import task; from cdc_sync.airflow.decorator import airflow_db_sync_task as f;"
         "assert task.datacoves_airflow_db_sync is f and task.airflow_db_sync is f; print('resolved')"],
        env=env, capture_output=True, text=True, timeout=180)
    assert resolved.stdout.strip().endswith("resolved"), resolved.stderr[-2000:]



def test_a_mapped_task_over_a_default_table_this_airflow_lacks_is_skipped(monkeypatch, airflow3_source, tmp_path,
                                                                          caplog):
    """tables_to_fan_out() maps over every default table, some of which an Airflow database may lack (task_fail
    on Airflow 3, ab_* without the FAB auth manager): such a task is skipped, which fails no DAG run, with the
    reason in its log; a table that is no default one still fails the task."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from cdc_sync.airflow.decorator import tables_to_fan_out
    from cdc_sync.sources import open_source
    from cdc_sync.urls import parse_url

    with open_source(parse_url(airflow3_source, role="source")) as source:
        absent = [table for table in tables_to_fan_out() if table not in source.list_tables()]
    assert "task_fail" in absent  # the real Airflow 3 schema
    mirror = tmp_path / "m.duckdb"
    monkeypatch.setenv("AIRFLOW_CONN_MAIN", json.dumps({"conn_type": "duckdb", "host": str(mirror)}))
    operator = _operator(db_type="duckdb", connection_id="main", source_url=airflow3_source)
    for table in ["task_fail", *(table for table in absent if table.startswith("ab_"))][:2]:
        with pytest.raises(AirflowSkipException, match=rf"{table}: not in this Airflow database.*skipped"):
            operator.run_cycle({"tables": [table]})
    assert not mirror.exists()  # nothing written
    with pytest.raises(AirflowFailException, match="no_such_table"):
        operator.run_cycle({"tables": ["no_such_table"]})
    with pytest.raises(AirflowFailException, match="task_fail"):  # named with a table that exists: a mistake
        operator.run_cycle({"tables": ["task_fail", "dag"]})


def test_history_option_keeps_versions_and_a_bad_value_fails_at_parse(monkeypatch, airflow3_source, tmp_path):
    import duckdb

    from cdc_sync.errors import ConfigError

    with pytest.raises(ConfigError, match="history='yes' must be True"):
        _operator(db_type="duckdb", connection_id="main", history="yes")
    mirror = tmp_path / "m.db"
    monkeypatch.setenv("AIRFLOW_CONN_MAIN", json.dumps({"conn_type": "duckdb", "host": str(mirror)}))
    operator = _operator(db_type="duckdb", connection_id="main", source_url=airflow3_source,
                         destination_schema="mirror", history=True)
    assert operator.run_cycle({"tables": ["dag_run"]})["ok"]
    connection = duckdb.connect(str(mirror))
    try:
        versions = connection.execute('SELECT _cdc_op, count(*) FROM "mirror"."dag_run__history" GROUP BY 1').fetchall()
    finally:
        connection.close()
    assert versions == [("insert", 50)]
