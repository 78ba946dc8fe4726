"""No secret of a URL reaches any output: values planted in the source and destination URLs, and echoed back by a
failing server, are searched for in stdout, stderr, logs, the state tables and every mirrored table."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import traceback
from pathlib import Path

import psycopg
import pytest

import cdc_sync
from cdc_sync.urls import make_url, redact, scrub

CLI = str(Path(sys.executable).with_name("cdc-sync"))
PLANTED = ("PLANTED-SECRET-1", "PLANTED-SECRET-2", "PLANTED-SECRET-3", "PLANTED-SECRET-4")


@pytest.mark.parametrize("url", [
    "snowflake://loader:pw-1234@acct/RAW?warehouse=WH&role=LOADER&token=PLANTED-SECRET-1",
    "snowflake://loader@acct/RAW?private_key_file_pwd=PLANTED-SECRET-1&private_key_file=/keys/k.p8",
    "redshift://etl@cluster:5439/dev?iam=true&secret_access_key=PLANTED-SECRET-1&access_key_id=AKIAEXAMPLE1",
    "postgresql://etl@db/airflow?sslmode=require&options=-c%20password%3DPLANTED-SECRET-1",
])
def test_redaction_hides_every_query_value_but_harmless_settings(url: str) -> None:
    shown = redact(url)
    assert "PLANTED-SECRET-1" not in shown and "pw-1234" not in shown and "/keys/k.p8" not in shown
    assert "AKIAEXAMPLE1" not in shown and "***" in shown
    assert "PLANTED-SECRET-1" not in repr(make_url(url)) and "PLANTED-SECRET-1" not in str(make_url(url))
    for harmless in ("warehouse=WH", "role=LOADER", "iam=true", "sslmode=require"):
        if harmless in url:
            assert harmless in shown


def test_driver_text_echoing_a_secret_is_scrubbed_in_every_spelling() -> None:
    url = make_url("snowflake://u:p%40ss-word@acct/DB?token=PLANTED%2FSECRET-1")
    echoed = "bad token 'PLANTED/SECRET-1' (PLANTED%2FSECRET-1); password p@ss-word rejected"
    cleaned = scrub(echoed, url, secrets=["key-passphrase-9"])
    assert "PLANTED" not in cleaned and "p@ss-word" not in cleaned and cleaned.count("***") == 3


def _plain(url: str) -> str:
    """The URL psycopg itself accepts (without the planted options)."""
    return url.split("?", 1)[0]


def _everything_in(destination: str, schema: str) -> str:
    with psycopg.connect(_plain(destination)) as connection:
        tables = connection.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                                    (schema,)).fetchall()
        assert {"_cdc_runs", "_cdc_watermarks", "_cdc_meta"} <= {t for (t,) in tables}
        return "\n".join(str(connection.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall())
                         for (table,) in tables)


def _cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *arguments], capture_output=True, text=True, timeout=300)


def _assert_hidden(text: str) -> None:
    for planted in PLANTED:
        assert planted not in text


def test_planted_url_secrets_reach_no_output_state_or_mirror(airflow3_source: str, postgres_destination: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    source = airflow3_source + "?token=PLANTED-SECRET-1&application_name=cdc"
    destination = postgres_destination + "?token=PLANTED-SECRET-2"
    first = _cli("run", "--source", source, "--destination", destination, "--tables", "dag,connection", "-v")
    assert first.returncode == 0, first.stderr
    # A table that fails in the warehouse: its error names the destination URL, in the state tables too.
    with psycopg.connect(_plain(postgres_destination), autocommit=True) as connection:
        connection.execute('ALTER TABLE "airflow"."dag" ADD CONSTRAINT refuse CHECK (false) NOT VALID')
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("UPDATE dag SET is_paused = NOT is_paused WHERE dag_id = 'dag_1'")
    failing = _cli("run", "--source", source, "--destination", destination, "--tables", "dag,connection", "-v")
    assert failing.returncode == 1 and "check constraint" in failing.stderr and "token=***" in failing.stderr
    status = _cli("status", "--destination", destination, "--json")
    assert status.returncode == 0 and "check constraint" in status.stdout
    assert json.loads(status.stdout)
    # A source whose server echoes a planted setting back in its refusal.
    refused_source = airflow3_source + "?options=-c%20statement_timeout%3DPLANTED-SECRET-3"
    refused = _cli("run", "--source", refused_source, "--destination", destination, "--tables", "dag")
    assert refused.returncode == 1 and "statement_timeout" in refused.stderr
    # The Python API, its exception, its traceback and its logs.
    with caplog.at_level(logging.INFO, logger="cdc_sync"), pytest.raises(cdc_sync.TableSyncError) as failed:
        cdc_sync.sync(source, destination, tables=["dag", "connection"])
    refused_again = airflow3_source + "?options=-c%20statement_timeout%3DPLANTED-SECRET-4"
    with pytest.raises(cdc_sync.CdcSyncError) as unreachable:  # (the traceback shows this line, not the URL's)
        cdc_sync.sync(refused_again, destination)
    outputs = [first.stdout, first.stderr, failing.stdout, failing.stderr, status.stdout, refused.stdout,
               refused.stderr, caplog.text, str(failed.value), str(unreachable.value),
               "".join(traceback.format_exception(failed.value)),
               "".join(traceback.format_exception(unreachable.value)),
               _everything_in(destination, "airflow")]
    for output in outputs:
        _assert_hidden(output)
