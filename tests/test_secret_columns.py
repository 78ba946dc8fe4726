"""Secret columns are denied by what their names say, in every table: the rule, the plan, the warning, and the
real schemas of Airflow 3.x, 2.11 and 2.10 as their own ``airflow db migrate`` builds them."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest

import cdc_sync
from cdc_sync.config import build_config
from cdc_sync.plan import plan_table
from cdc_sync.secrets import names_a_credential
from cdc_sync.sources import open_source
from cdc_sync.urls import make_url
from tests.airflow_schema import airflow_migrate
from tests.conftest import require_service
from tests.mirror_check import mirror_query

AIRFLOW210_VENV = Path(os.environ.get("CDC_SYNC_AIRFLOW210_VENV",
                                      Path(__file__).resolve().parent.parent / ".venv-airflow210"))

# The test's own net, wider than the rule on purpose (substrings, not words): every column it catches in a real
# schema must be excluded, or be reviewed here and listed below. It does not reuse cdc_sync's rule, so a rule that
# grows weaker cannot pass its own test.
SUSPICIOUS = re.compile(r"pass|pwd|secret|token|cred|auth|private|cookie|jwt|salt|sign|hash|session|api_?key|"
                        r"access_?key|cert")

# Columns the net catches that are copied on purpose, each reviewed.
REVIEWED_COPIED: dict[tuple[str, str], str] = {
    ("dag_code", "fileloc_hash"): "a digest of the DAG file's path",
    ("dag_code", "source_code_hash"): "a digest of the DAG file's source, which dag_code copies anyway",
    ("serialized_dag", "fileloc_hash"): "a digest of the DAG file's path",
    ("serialized_dag", "dag_hash"): "a digest of the serialized DAG, which serialized_dag copies anyway",
    ("dag_run", "dag_hash"): "the serialized DAG's digest the run was created from",
    ("dag_pickle", "pickle_hash"): "a digest of the pickled DAG (Airflow 2)",
    ("hitl_detail", "assignees"): "the users asked to answer a human-in-the-loop task ('sign' in 'assignees')",
    ("hitl_detail_history", "assignees"): "as hitl_detail.assignees",
}

# Payloads that hold secrets without their names saying so: excluded wherever the table exists.
KNOWN_PAYLOADS = {
    ("connection", "extra"), ("variable", "val"), ("trigger", "kwargs"), ("session", "data"),
    ("session", "session_id"), ("callback", "data"), ("task_state_store", "value"), ("asset_state_store", "value"),
    ("connection_test_request", "extra"), ("ab_register_user", "registration_hash"),
    ("deadline_alert", "callback_def"), ("dag_bundle", "signed_url_template"),
}


@pytest.mark.parametrize("column", [
    "password", "db_passwd", "api_key", "apiKey", "private_key_file_pwd", "client_secret", "oauth_token",
    "refresh_tokens", "credentials", "auth", "auth_type", "AUTHORIZATION", "secret_access_key", "jwt",
])
def test_a_credential_word_in_a_column_name_marks_it(column: str) -> None:
    assert names_a_credential(column)


@pytest.mark.parametrize("column", [
    "key", "xcom_key", "partition_key", "tokenizer", "author", "authority", "passenger", "dag_hash", "value",
    "session_id", "keys",
])
def test_words_that_only_contain_a_credential_word_do_not(column: str) -> None:
    assert not names_a_credential(column)


def _plugin_table(source: str) -> str:
    """An Airflow SQLite database with a table no catalog knows added, as a plugin would add next to Airflow's."""
    with sqlite3.connect(source.removeprefix("sqlite:///")) as connection:
        connection.execute("CREATE TABLE plugin_account (id INTEGER PRIMARY KEY, name TEXT, api_key TEXT, "
                           "refresh_token TEXT, xcom_key TEXT)")
        connection.execute("INSERT INTO plugin_account VALUES (1, 'acme', 'PLUGIN-API-KEY-1', 'PLUGIN-REFRESH-1', "
                           "'k')")
    return source


def test_a_plugin_tables_credential_columns_are_denied_and_reported_once(sqlite_airflow3_source: str,
                                                                         tmp_path: Path) -> None:
    source = _plugin_table(sqlite_airflow3_source)
    destination = f"duckdb:///{tmp_path / 'mirror.duckdb'}"
    report = cdc_sync.sync(source, destination, "plugins", tables=["plugin_account"])
    assert report.ok, report.failed
    rows = mirror_query(destination, 'SELECT * FROM "plugins"."plugin_account"')
    assert "PLUGIN-API-KEY-1" not in str(rows) and "PLUGIN-REFRESH-1" not in str(rows)
    columns = {c for (c,) in mirror_query(destination, "SELECT column_name FROM information_schema.columns WHERE "
                                                      "table_schema = 'plugins' AND table_name = 'plugin_account'")}
    assert {"id", "name", "xcom_key"} <= columns and not {"api_key", "refresh_token"} & columns
    reported = [w for w in report.warnings if "plugin_account" in w]
    assert len(reported) == 1
    assert "api_key" in reported[0] and "refresh_token" in reported[0]
    assert "--include-column plugin_account.api_key" in reported[0]
    assert "PLUGIN-API-KEY-1" not in reported[0]


def test_include_columns_is_the_one_way_back_in(sqlite_airflow3_source: str, tmp_path: Path) -> None:
    source = _plugin_table(sqlite_airflow3_source)
    destination = f"duckdb:///{tmp_path / 'mirror.duckdb'}"
    report = cdc_sync.sync(source, destination, "plugins", tables=["plugin_account"],
                           include_columns=["plugin_account.api_key"])
    assert mirror_query(destination, 'SELECT api_key FROM "plugins"."plugin_account"') == [("PLUGIN-API-KEY-1",)]
    reported = [w for w in report.warnings if "plugin_account" in w]
    assert len(reported) == 1 and "refresh_token" in reported[0] and "api_key" not in reported[0]


@pytest.fixture(scope="session")
def sqlite_airflow210_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file holding an empty Airflow 2.10 schema (AIRFLOW2_VERSION=2.10 tests/airflow2_env.sh
    .venv-airflow210 builds the environment)."""
    airflow_bin = AIRFLOW210_VENV / "bin" / "airflow"

    def check() -> None:
        if not airflow_bin.exists():
            raise FileNotFoundError(f"no Airflow 2.10 environment at {AIRFLOW210_VENV}: create it with "
                                    "AIRFLOW2_VERSION=2.10 bash tests/airflow2_env.sh .venv-airflow210")

    require_service("Airflow 2.10", check)
    path = tmp_path_factory.mktemp("sqlite210-template") / "airflow210.db"
    airflow_migrate(f"sqlite:///{path}", airflow_bin=str(airflow_bin))
    return path


@pytest.mark.parametrize("version", ["3.x", "2.11", "2.10"])
def test_no_credential_named_column_of_a_real_airflow_schema_is_copied(version: str,
                                                                        request: pytest.FixtureRequest) -> None:
    """Every table of the real schema, planned as ``--all-tables`` plans it: a column the net catches is excluded
    or reviewed, and the known payloads are excluded."""
    template = {"3.x": "sqlite_airflow3_template", "2.11": "sqlite_airflow2_template",
                "2.10": "sqlite_airflow210_template"}[version]
    url = f"sqlite:///{request.getfixturevalue(template)}"
    config = build_config(source=url, destination="duckdb:///unused.duckdb", tables=[])
    with open_source(make_url(url)) as source:
        schemas = source.describe_tables(source.list_tables())
    assert len(schemas) > 40, "the schema was not built"
    copied_secrets, payloads_seen = [], set()
    for name, schema in schemas.items():
        excluded = set(plan_table(schema, config).excluded_columns)
        for column in schema.column_names:
            if (name, column) in KNOWN_PAYLOADS:
                payloads_seen.add((name, column))
                if column not in excluded:
                    copied_secrets.append(f"{name}.{column} (a known payload)")
            elif SUSPICIOUS.search(column) and column not in excluded and (name, column) not in REVIEWED_COPIED:
                copied_secrets.append(f"{name}.{column}")
    assert not copied_secrets, f"Airflow {version} columns copied though their names suggest secrets: " \
        f"{copied_secrets}; exclude them (cdc_sync/secrets.py, catalog) or review them into REVIEWED_COPIED"
    assert ("connection", "extra") in payloads_seen and ("variable", "val") in payloads_seen
