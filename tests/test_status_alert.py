"""``cdc-sync status --max-lag``: a verdict per table (fresh, stale, failed) and an exit code for alerting, after
real cycles of a real Airflow 3 database."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from cdc_sync.cli import STALE_EXIT_CODE, main
from cdc_sync.freshness import parse_duration

TABLES = "dag,dag_run,task_instance"


def _cycle(runner: CliRunner, source: str, destination: str, tables: str = TABLES,
           env: dict[str, str] | None = None) -> None:
    runner.invoke(main, ["run", "--source", source, "--destination", destination, "--tables", tables, "--json"],
                  env=env)


def _status(runner: CliRunner, destination: str, max_lag: str, *extra: str) -> tuple[int, dict]:
    result = runner.invoke(main, ["status", "--destination", destination, "--max-lag", max_lag, "--json", *extra])
    return result.exit_code, json.loads(result.stdout)


def test_fresh_stale_and_failed_tables_get_their_verdict_and_the_exit_code(sqlite_airflow3_source: str,
                                                                           tmp_path: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "m.duckdb"
    destination = f"duckdb:///{path}"
    _cycle(runner, sqlite_airflow3_source, destination)

    code, verdict = _status(runner, destination, "1h")
    assert code == 0 and verdict["ok"] is True and verdict["stale"] == verdict["failed"] == []
    assert {t["table_name"]: t["verdict"] for t in verdict["tables"]} == dict.fromkeys(TABLES.split(","), "fresh")
    assert all(0 <= t["current_lag_seconds"] < 60 for t in verdict["tables"])

    # dag_run's last success two hours ago: stale against one hour, fresh against three.
    with duckdb.connect(str(path)) as warehouse:
        warehouse.execute("UPDATE airflow._cdc_watermarks SET last_success_at = last_success_at - INTERVAL 2 HOUR "
                          "WHERE table_name = 'dag_run'")
    code, verdict = _status(runner, destination, "1h")
    assert code == STALE_EXIT_CODE and verdict["ok"] is False
    assert verdict["stale"] == ["dag_run"] and verdict["failed"] == []
    lags = {t["table_name"]: t["current_lag_seconds"] for t in verdict["tables"]}
    assert 7200 <= lags["dag_run"] < 7200 + 60 and lags["dag"] < 60
    assert _status(runner, destination, "3h")[0] == 0

    # A real failure of dag_run's next attempt: failed, whatever its lag; the other tables stay fresh.
    _cycle(runner, sqlite_airflow3_source, destination, tables="dag_run", env={"CDC_SYNC_FAULT": "merge:raise"})
    code, verdict = _status(runner, destination, "3h")
    assert code == STALE_EXIT_CODE and verdict["failed"] == ["dag_run"] and verdict["stale"] == []
    failed = next(t for t in verdict["tables"] if t["table_name"] == "dag_run")
    assert "fault injected" in failed["last_error"]
    human = runner.invoke(main, ["status", "--destination", destination, "--max-lag", "3h"])
    assert human.exit_code == STALE_EXIT_CODE and "alert: dag_run: failed in their last attempt" in human.stderr

    # The next successful cycle clears the failure and the lag.
    _cycle(runner, sqlite_airflow3_source, destination, tables="dag_run")
    code, verdict = _status(runner, destination, "1h")
    assert code == 0 and verdict["ok"] is True

    # Without --max-lag, status only reports: the same list as before, exit 0.
    plain = runner.invoke(main, ["status", "--destination", destination, "--json"])
    assert plain.exit_code == 0 and isinstance(json.loads(plain.stdout), list)


def test_a_tiny_max_lag_is_exceeded_after_a_short_wait(sqlite_airflow3_source: str, tmp_path: Path) -> None:
    import time

    runner = CliRunner()
    destination = f"duckdb:///{tmp_path}/m.duckdb"
    _cycle(runner, sqlite_airflow3_source, destination, tables="dag")
    time.sleep(1.2)
    code, verdict = _status(runner, destination, "1s")
    assert code == STALE_EXIT_CODE and verdict["stale"] == ["dag"]
    assert verdict["tables"][0]["current_lag_seconds"] > 1
    # Only the tables named: one the schema never synced is stale.
    assert _status(runner, destination, "1h", "--table", "dag")[0] == 0
    code, verdict = _status(runner, destination, "1h", "--table", "dag,dag_run")
    assert code == STALE_EXIT_CODE and verdict["stale"] == ["dag_run"]
    assert [(t["table_name"], t["verdict"]) for t in verdict["tables"]] == [("dag", "fresh"), ("dag_run", "stale")]
    alone = runner.invoke(main, ["status", "--destination", destination, "--table", "dag"])
    assert alone.exit_code == 2 and "give --max-lag too" in alone.stderr
    # A schema no cycle has synced is not fresh either.
    code, verdict = _status(runner, destination, "1h", "--schema", "never_synced")
    assert code == STALE_EXIT_CODE and verdict["ok"] is False and verdict["tables"] == []
    human = runner.invoke(main, ["status", "--destination", destination, "--max-lag", "1h", "--schema", "never"])
    assert human.exit_code == STALE_EXIT_CODE and "alert: No cycle has run into this schema yet." in human.stderr


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("90s", 90), ("1h30m", 5400), ("2d", 172800),
                                               ("0.5h", 1800), (" 1H ", 3600)])
def test_durations_in_seconds_minutes_hours_and_days(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", "30x", "m", "1h-5m", "0s", ""])
def test_a_bad_max_lag_is_a_usage_error_naming_the_form(text: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["status", "--destination", f"duckdb:///{tmp_path}/m.duckdb",
                                       "--max-lag", text])
    assert result.exit_code == 2
    assert "Invalid value for '--max-lag'" in result.stderr and "e.g. 30m" in result.stderr
    assert "Traceback" not in result.output
