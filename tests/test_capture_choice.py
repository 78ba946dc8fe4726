"""Choosing the capture mode (cdc_sync.capture_choice): ``auto`` keeps the watermark mode and says why in one info
line, ``log`` is refused early with the fix named when the source or destination cannot do it, against real
sources."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cdc_sync import sync
from cdc_sync.capture_choice import choose_capture, log_capture_refusal
from cdc_sync.config import build_config
from cdc_sync.errors import ConfigError


def _choice_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.levelno == logging.INFO and record.getMessage().startswith("capture=")]


def test_an_unknown_capture_mode_is_refused_before_anything_connects() -> None:
    with pytest.raises(ConfigError, match="capture='wal' is not a capture mode: use one of auto, log, query"):
        build_config(source="postgresql://h/airflow", destination="duckdb:///m.duckdb", capture="wal")


def test_log_capture_into_a_destination_without_its_merge_is_refused_without_connecting() -> None:
    config = build_config(source="postgresql://127.0.0.1:1/airflow", destination="snowflake://u:p@acct/DB")
    assert "does not write into snowflake" in log_capture_refusal(config, ["dag_run"])


def test_auto_on_sqlite_syncs_in_query_mode_and_says_why(sqlite_airflow3_source: str, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cdc_sync")
    report = sync(sqlite_airflow3_source, f"duckdb:///{tmp_path / 'm.duckdb'}", tables=["dag_run"])
    assert report.ok and report.tables[0].rows_written > 0
    assert _choice_lines(caplog) == ["capture=auto uses the watermark mode: log capture reads PostgreSQL's "
                                     "write-ahead log, and this source is SQLite"]


def test_log_on_sqlite_fails_before_the_mirror_exists(sqlite_airflow3_source: str, tmp_path: Path) -> None:
    mirror = tmp_path / "m.duckdb"
    with pytest.raises(ConfigError, match=r"capture=log is not possible: .* this source is SQLite\. Fix that, or "
                                          r"use capture=query"):
        sync(sqlite_airflow3_source, f"duckdb:///{mirror}", tables=["dag_run"], capture="log")
    assert not mirror.exists()


def test_auto_on_a_logical_postgresql_source_says_the_log_is_possible_but_not_chosen_yet(
        logical_decoding_available: None, airflow3_source: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cdc_sync")
    config = build_config(source=airflow3_source, destination="duckdb:///unused.duckdb")
    assert choose_capture(config, ["dag_run", "task_instance"]).mode == "query"
    assert _choice_lines(caplog) == ["capture=auto uses the watermark mode: the source allows log capture, but auto "
                                     "does not choose it yet; opt in with capture=log (CLI --capture log)"]


def test_query_says_nothing_and_asks_the_source_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cdc_sync")
    config = build_config(source="postgresql://127.0.0.1:1/unreachable", destination="duckdb:///m.duckdb",
                          capture="query")
    assert choose_capture(config, ["dag_run"]).mode == "query"
    assert _choice_lines(caplog) == []


def test_auto_falls_back_when_the_capability_check_itself_fails(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cdc_sync")
    config = build_config(source="postgresql://postgres@127.0.0.1:1/unreachable", destination="duckdb:///m.duckdb")
    assert choose_capture(config, ["dag_run"]).mode == "query"
    [line] = _choice_lines(caplog)
    assert line.startswith("capture=auto uses the watermark mode: the capability check failed (Connecting for log "
                           "capture")


def test_the_operator_refuses_an_unknown_capture_mode() -> None:
    pytest.importorskip("airflow")
    from cdc_sync.airflow.operator import AirflowDbSyncOperator

    operator = AirflowDbSyncOperator(task_id="ok", db_type="duckdb", connection_id="main", capture="query")
    assert operator.sync_options["capture"] == "query"
    with pytest.raises(ConfigError, match="capture='wal' is not a capture mode"):
        AirflowDbSyncOperator(task_id="bad", db_type="duckdb", connection_id="main", capture="wal")
