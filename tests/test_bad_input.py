"""Bad input: a clear one-line error naming the problem and the fix, a non-zero exit, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import psycopg
import pytest
from click.testing import CliRunner

import cdc_sync
from cdc_sync.cli import main
from cdc_sync.errors import ConfigError, CycleAlreadyRunningError, SourceError
from tests.mirror_check import mirror_query


def test_unknown_table_writes_nothing(airflow3_source: str, tmp_path: Path) -> None:
    target = tmp_path / "never.duckdb"
    with pytest.raises(cdc_sync.UnknownTableError, match="no_such_table"):
        cdc_sync.sync(airflow3_source, f"duckdb:///{target}", tables=["dag", "no_such_table"])
    assert not target.exists()


def test_unknown_table_on_postgres_creates_no_schema(airflow3_source: str, postgres_destination: str) -> None:
    with pytest.raises(cdc_sync.UnknownTableError):
        cdc_sync.sync(airflow3_source, postgres_destination, "mirror", additional_tables=["nope"])
    assert mirror_query(postgres_destination,
                        "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'mirror'") == [(0,)]


@pytest.mark.parametrize("url", ["postgresql://user:s3cret@host:notaport/db", "not a url", "oracle://u:s3cret@h/db"])
def test_malformed_or_unsupported_url_is_refused_without_showing_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as error:
        cdc_sync.sync(url, "duckdb:///x.duckdb")
    assert "s3cret" not in str(error.value)


def test_unreachable_source_names_the_host_but_not_the_password(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as error:
        cdc_sync.sync("postgresql://postgres:s3cret@127.0.0.1:1/airflow", f"duckdb:///{tmp_path}/x.duckdb")
    assert "127.0.0.1:1" in str(error.value) and "s3cret" not in str(error.value)


def test_schema_name_the_warehouse_cannot_hold(airflow3_source: str, postgres_destination: str) -> None:
    with pytest.raises(ConfigError, match="longer than"):
        cdc_sync.sync(airflow3_source, postgres_destination, "x" * 64)


def test_duckdb_file_held_by_another_process(airflow3_source: str, duckdb_destination: str) -> None:
    path = duckdb_destination.removeprefix("duckdb:///")
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb,sys,time; c=duckdb.connect({path!r}); "
                               "print('ready', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(CycleAlreadyRunningError, match="another process"):
            cdc_sync.sync(airflow3_source, duckdb_destination)
    finally:
        holder.kill()
        holder.wait()


def test_cli_errors_are_one_line_with_exit_code(airflow3_source: str, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["run", "--source", airflow3_source, "--destination",
                                  f"duckdb:///{tmp_path}/m.duckdb", "--tables", "dag,nope"])
    assert result.exit_code == 2
    assert "nope" in result.output and "Traceback" not in result.output


def test_cli_run_then_status(airflow3_source: str, tmp_path: Path) -> None:
    runner = CliRunner()
    destination = f"duckdb:///{tmp_path}/m.duckdb"
    result = runner.invoke(main, ["run", "--source", airflow3_source, "--destination", destination,
                                  "--additional-tables", "log", "--json"])
    assert result.exit_code == 0, result.output
    assert '"task_instance"' in result.output
    status = runner.invoke(main, ["status", "--destination", destination, "--json"])
    assert status.exit_code == 0
    assert '"table_name": "log"' in status.output and '"strategy": "append"' in status.output
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("UPDATE dag_run SET state = 'failed', updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__9'")
    again = runner.invoke(main, ["run", "--source", airflow3_source, "--destination", destination, "--json"])
    assert again.exit_code == 0 and '"rows_written": 1' in again.output


def test_status_of_a_schema_never_synced_is_empty_and_an_unreachable_warehouse_is_an_error(
    postgres_destination: str,
) -> None:
    assert cdc_sync.status(postgres_destination, "never_synced") == []
    with pytest.raises(cdc_sync.DestinationError) as error:
        cdc_sync.status("postgresql://postgres:s3cret@127.0.0.1:1/warehouse", "airflow")
    assert "127.0.0.1:1" in str(error.value) and "s3cret" not in str(error.value)


def test_the_installed_executable_keeps_exit_codes_and_flushes_its_output(airflow3_source: str,
                                                                          tmp_path: Path) -> None:
    """``cdc-sync`` ends without interpreter teardown: its exit code and every byte of output must survive that."""
    cli = Path(sys.executable).with_name("cdc-sync")
    destination = f"duckdb:///{tmp_path}/m.duckdb"
    refused = subprocess.run([str(cli), "run", "--source", "postgresql://u:hunter2@127.0.0.1:99999/db"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "Malformed source URL" in refused.stderr and "hunter2" not in refused.stderr + refused.stdout
    synced = subprocess.run([str(cli), "run", "--source", airflow3_source, "--destination", destination, "--json"],
                            capture_output=True, text=True, timeout=300)
    assert synced.returncode == 0, synced.stderr[-2000:]
    report = json.loads(synced.stdout)  # the whole JSON document arrived
    assert report["ok"] and report["tables"]["task_instance"]["rows_read"] > 0
    with duckdb.connect(f"{tmp_path}/m.duckdb", read_only=True) as mirror:  # closed and checkpointed
        assert mirror.execute("SELECT count(*) FROM airflow.task_instance").fetchone()[0] == \
            report["tables"]["task_instance"]["rows_read"]
