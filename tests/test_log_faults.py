"""The fault matrix in the log capture mode: a real ``cdc-sync run --capture log`` process fails at each point a log
cycle reaches (the mirror's MERGE of logged versions, the watermark, COMMIT, and the slot's advance after it), by
an error and, separately, by SIGKILL; the next log cycle must leave an exact mirror, on DuckDB and PostgreSQL.

Before each failing run the source changes as a scheduler changes it, in separate transactions: task instances
retried with new ids (their old replica identity deleted), a new one, a run's task instances deleted, a run's
state. One step also adds a column that later rows fill, a schema change in the middle of the log.
"""

from __future__ import annotations

import os
import subprocess
import uuid

import psycopg
import pytest

import cdc_sync
from cdc_sync.faults import HISTORY_POINTS, POINTS
from cdc_sync.sources.publication import LogNames
from tests import fault_run
from tests.mirror_check import AIRFLOW_KEYS, assert_mirrored

SCHEMA = f"log_faults_{uuid.uuid4().hex[:8]}"  # slot names are global to the server
TABLES = ["dag_run", "task_instance"]
# Where a log cycle of mirrored tables stops: "read", "staging" and "deletes" belong to query-path reads, and
# "column_ddl" to the step that adds a column (checked below to be reached there).
LOG_POINTS = ("merge", "state", "commit", "advance")


def sync(source: str, destination: str) -> None:
    report = cdc_sync.sync(source, destination, SCHEMA, tables=TABLES, capture="log")
    assert report.ok, report.failed


def run_failing(source: str, destination: str, fault: str) -> subprocess.CompletedProcess:
    arguments = ["--", "run", "--source", source, "--destination", destination, "--schema", SCHEMA,
                 "--tables", ",".join(TABLES), "--capture", "log", "--json"]
    return fault_run.launch(arguments, {**os.environ, "CDC_SYNC_FAULT": fault}, timeout=120)


def change_source(source: str, step: int) -> None:
    with psycopg.connect(source, autocommit=True) as connection:
        connection.execute("UPDATE task_instance SET state = 'up_for_retry', try_number = try_number + 1, "
                           "id = gen_random_uuid(), updated_at = clock_timestamp() WHERE run_id = %s",
                           (f"scheduled__{step}",))
        connection.execute(
            "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, state, try_number, max_tries, pool, "
            "pool_slots, span_status, updated_at) SELECT gen_random_uuid(), %s, dag_id, run_id, -1, 'queued', 0, 1, "
            "'default_pool', 1, 'not_started', clock_timestamp() FROM dag_run WHERE run_id = 'scheduled__30'",
            (f"log_fault_{step}",))
        connection.execute("DELETE FROM task_instance WHERE run_id = %s", (f"scheduled__{40 + step}",))
        connection.execute("UPDATE dag_run SET state = 'failed', updated_at = clock_timestamp() WHERE run_id = %s",
                           (f"scheduled__{step}",))


def assert_exact(source: str, destination: str) -> None:
    for table in TABLES:
        assert_mirrored(source, destination, SCHEMA, table, AIRFLOW_KEYS[table])


@pytest.mark.parametrize("kind", ["duckdb", "postgresql"])
def test_every_log_fault_point_leaves_an_exact_mirror_after_the_next_cycle(
        logical_source: str, kind: str, request: pytest.FixtureRequest) -> None:
    assert set(LOG_POINTS) | {"read", "staging", "deletes", "column_ddl"} | HISTORY_POINTS == set(POINTS)
    destination = request.getfixturevalue(f"{'duckdb' if kind == 'duckdb' else 'postgres'}_destination")
    sync(logical_source, destination)
    step = 0
    for point in LOG_POINTS:
        for mode in ("raise", "kill"):
            step += 1
            change_source(logical_source, step)
            failed = run_failing(logical_source, destination, f"{point}:{mode}")
            if mode == "kill":
                assert failed.returncode == -9, (point, failed.returncode, failed.stderr[-2000:])
            else:
                assert failed.returncode == 1, (point, failed.stderr[-2000:])
                assert f"fault injected at {point!r}" in failed.stdout + failed.stderr, (point, failed.stdout[-2000:])
            sync(logical_source, destination)
            assert_exact(logical_source, destination)
    # A column added mid-stream, filled by later writes: the mirror gains it (column_ddl) and a kill there loses
    # nothing either.
    with psycopg.connect(logical_source, autocommit=True) as connection:
        connection.execute("ALTER TABLE task_instance ADD COLUMN log_fault_note text")
        connection.execute("UPDATE task_instance SET log_fault_note = 'noted', updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__20'")
    change_source(logical_source, step + 1)
    failed = run_failing(logical_source, destination, "column_ddl:kill")
    assert failed.returncode == -9, failed.stderr[-2000:]
    sync(logical_source, destination)
    assert_exact(logical_source, destination)
    with psycopg.connect(logical_source) as connection:  # the slot is still cdc_sync's, and it moved on
        slot = connection.execute("SELECT confirmed_flush_lsn IS NOT NULL FROM pg_replication_slots "
                                  "WHERE slot_name = %s", (LogNames.for_schema(SCHEMA).slot,)).fetchone()
    assert slot == (True,)
