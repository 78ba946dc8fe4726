"""A first log cycle on a server where a write transaction is running, in any database: PostgreSQL makes a logical
slot only once every such transaction has ended, so the cycle bounds its wait. ``auto`` goes on in the watermark mode
at once and tries again next cycle; ``log`` fails with the cause and the fix. No slot is left half-made. Against
the real server, with a real open writer in another database."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cdc_sync import log_capture, sync
from cdc_sync.errors import SlotCreationBlocked
from cdc_sync.sources.publication import LogNames
from tests.airflow_schema import PG_ADMIN

TABLES = ["dag_run", "task_instance"]
WAIT_SECONDS = 1.0
# Far longer than the bounded wait: a cycle still running then is waiting on the writer.
CYCLE_DEADLINE_SECONDS = 30


@pytest.fixture
def writer_elsewhere() -> Iterator[int]:
    """A transaction holding a transaction id in the ``postgres`` database (not the source's); yields its pid."""
    connection = psycopg.connect(PG_ADMIN)
    try:
        connection.execute("SELECT pg_current_xact_id()")
        yield connection.execute("SELECT pg_backend_pid()").fetchone()[0]
    finally:
        connection.close()  # rolls the transaction back, if a test has not ended it


def _slot_count(source: str, slot: str) -> int:
    with psycopg.connect(source) as connection:
        return connection.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                                  (slot,)).fetchone()[0]


def _cycle_in_thread(**arguments) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["report"] = sync(**arguments)
        except BaseException as error:  # handed to the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_auto_does_not_wait_for_a_writer_in_another_database_and_reads_the_log_once_it_ended(
        logical_source: str, writer_elsewhere: int, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.INFO, logger="cdc_sync")
    monkeypatch.setattr(log_capture, "SLOT_CREATE_WAIT_SECONDS", WAIT_SECONDS)
    schema = f"wait_{uuid.uuid4().hex[:8]}"
    slot = LogNames.for_schema(schema).slot
    arguments = {"source": logical_source, "destination": f"duckdb:///{tmp_path / 'm.duckdb'}", "schema": schema,
                 "tables": TABLES, "capture": "auto"}
    thread, outcome = _cycle_in_thread(**arguments)
    thread.join(CYCLE_DEADLINE_SECONDS)
    assert not thread.is_alive(), "the cycle waited on a transaction of another database"
    assert "error" not in outcome, outcome.get("error")
    report = outcome["report"]
    assert report.ok and {table.table: table.rows_written > 0 for table in report.tables} == dict.fromkeys(TABLES, True)
    fallback = [record.getMessage() for record in caplog.records
                if record.getMessage().startswith("capture=auto uses the watermark mode this cycle")]
    assert len(fallback) == 1
    assert f"replication slot {slot} within {WAIT_SECONDS:g} s" in fallback[0]
    assert f"pid {writer_elsewhere} in database postgres" in fallback[0]
    assert _slot_count(logical_source, slot) == 0  # the cancelled creation left nothing behind

    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:  # the writer ends
        connection.execute("SELECT pg_terminate_backend(%s)", (writer_elsewhere,))
    assert sync(**arguments).ok
    assert _slot_count(logical_source, slot) == 1


def test_log_mode_fails_with_the_writer_and_the_fix_and_makes_no_slot(
        logical_source: str, writer_elsewhere: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_capture, "SLOT_CREATE_WAIT_SECONDS", WAIT_SECONDS)
    schema = f"wait_{uuid.uuid4().hex[:8]}"
    thread, outcome = _cycle_in_thread(source=logical_source, destination=f"duckdb:///{tmp_path / 'm.duckdb'}",
                                       schema=schema, tables=TABLES, capture="log")
    thread.join(CYCLE_DEADLINE_SECONDS)
    assert not thread.is_alive(), "the cycle waited on a transaction of another database"
    error = outcome.get("error")
    assert isinstance(error, SlotCreationBlocked), error
    message = str(error)
    assert f"pid {writer_elsewhere} in database postgres" in message
    assert "End that transaction, or wait for it, then run the cycle again" in message
    assert "cdc-sync capture setup" in message
    assert _slot_count(logical_source, LogNames.for_schema(schema).slot) == 0
