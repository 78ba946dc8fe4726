"""A real ``cdc-sync run`` process fails at each named point of a table's cycle (cdc_sync/faults.py), by an error
and, separately, by SIGKILL; the next cycle must then leave an exact mirror on DuckDB, PostgreSQL and Snowflake
(fakesnow, its databases in files shared with the subprocess).

Before each failing run the source changes in every way a point needs: task instances retried (more rows than a
staging chunk, so the load has several chunks), a new one, a run's deleted (delete reconciliation), a new column with
a default (so older rows need a backfill), and the keyless table changed. After the next cycle every row and column
is compared, no key appears twice among all mirror rows, no column awaits a backfill, and the lock was free.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

import cdc_sync
from cdc_sync import faults
from cdc_sync.faults import HISTORY_POINTS, LOG_CAPTURE_POINTS, POINTS
from cdc_sync.report import CycleReport
from cdc_sync.state import utc_now
from cdc_sync.table_attempts import ATTEMPTS, BACKOFF_SECONDS
from tests import fault_run
from tests.fakesnow_rules import make_ddl_commit, skip_null_comments
from tests.mirror_check import AIRFLOW_KEYS, mirror_query, mirror_rows, source_columns, source_rows

SCHEMA = "airflow-faults"
TABLES = ["task_instance", "fault_keyless"]
CHUNK_ROWS = 4  # task_instance retries touch 8 rows a step: two chunks
LEASE_SECONDS = 0.5


class Mirror:
    """One destination under test: its URL, an in-process cycle, and a way to read it back."""

    def __init__(self, kind: str, url: str, read_url: str, fakesnow_dir: Path | None = None) -> None:
        self.kind, self.url, self.read_url, self.fakesnow_dir = kind, url, read_url, fakesnow_dir

    def sync(self, source: str, tables: list[str] = TABLES) -> CycleReport:
        with self._session():
            return cdc_sync.sync(source, self.url, SCHEMA, tables=tables, raise_on_failure=False)

    @contextlib.contextmanager
    def _session(self):
        if self.fakesnow_dir is None:
            yield
            return
        import fakesnow

        undo = [skip_null_comments(), make_ddl_commit()]
        try:
            with fakesnow.patch(db_path=self.fakesnow_dir):
                yield
        finally:
            for step in undo:
                step()

    def run_failing(self, source: str, fault: str) -> subprocess.CompletedProcess:
        """``cdc-sync run`` in a process of its own (forked from a server with the imports done), with
        CDC_SYNC_FAULT set."""
        launcher = ["--chunk-rows", str(CHUNK_ROWS)]
        if self.fakesnow_dir is not None:
            launcher += ["--fakesnow", str(self.fakesnow_dir), "--lease-seconds", str(LEASE_SECONDS)]
        arguments = [*launcher, "--", "run", "--source", source, "--destination", self.url, "--schema", SCHEMA,
                     "--tables", ",".join(TABLES), "--json"]
        return fault_run.launch(arguments, {**os.environ, "CDC_SYNC_FAULT": fault}, timeout=120)

    def query(self, sql: str) -> list[tuple]:
        return mirror_query(self.read_url, sql)


@pytest.fixture(params=["duckdb", "postgresql", "snowflake"])
def mirror(request: pytest.FixtureRequest, tmp_path: Path) -> Mirror:
    if request.param == "duckdb":
        url = f"duckdb:///{tmp_path / 'mirror.duckdb'}"
        return Mirror("duckdb", url, url)
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_destination")
        return Mirror("postgresql", url, url)
    pytest.importorskip("fakesnow")
    directory = tmp_path / "fakesnow"
    directory.mkdir()
    database = f"MIRROR_{uuid.uuid4().hex[:6].upper()}"
    return Mirror("snowflake", f"snowflake://cdc:secret@acct/{database}?warehouse=WH",
                  f"duckdb:///{directory / database}.db", directory)


def change_source(source: str, step: int) -> None:
    """Every kind of change the fault points need (see the module docstring)."""
    with psycopg.connect(source, autocommit=True) as connection:
        connection.execute(f"ALTER TABLE task_instance ADD COLUMN fault_note_{step} text DEFAULT 'note {step}'")
        connection.execute(
            "UPDATE task_instance SET state = 'failed', try_number = try_number + 1, "
            "updated_at = clock_timestamp() WHERE run_id = ANY(%s)",
            ([f"scheduled__{2 * step + 1}", f"scheduled__{2 * step + 2}"],))
        connection.execute(
            "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, state, try_number, max_tries, pool, "
            "pool_slots, span_status, updated_at) SELECT gen_random_uuid(), %s, dag_id, run_id, -1, 'queued', 0, 1, "
            "'default_pool', 1, 'not_started', clock_timestamp() FROM dag_run WHERE run_id = 'scheduled__30'",
            (f"fault_{step}",))
        connection.execute("DELETE FROM task_instance WHERE run_id = %s", (f"scheduled__{40 + step}",))
        connection.execute("INSERT INTO fault_keyless VALUES (%s, %s)", (f"step {step}", step))
        connection.execute("DELETE FROM fault_keyless WHERE value = %s", (step - 1,))


def plain(value: Any) -> Any:
    """Snowflake's NUMBER(38,0) reads back from the emulator's file as a Decimal; the source has an int."""
    return int(value) if isinstance(value, Decimal) and value == value.to_integral_value() else value


def assert_exact_mirror(source: str, mirror: Mirror) -> None:
    for table in ("task_instance",):
        key = AIRFLOW_KEYS[table]
        columns = source_columns(source, table)
        expected = source_rows(source, table, columns, key)
        actual = mirror_rows(mirror.read_url, SCHEMA, table, columns, key)  # live rows; duplicates fail here
        assert set(actual) == set(expected), (table, set(expected) ^ set(actual))
        for identity, row in expected.items():
            copy = {column: plain(value) for column, value in actual[identity].items()}
            assert copy == row, (table, identity, {c: (row[c], copy[c]) for c in row if row[c] != copy[c]})
        every_row = mirror.query(f'SELECT count(*) FROM "{SCHEMA}"."{table}"')[0][0]
        # Soft-deleted rows included, no key is there twice.
        assert len(mirror_rows(mirror.read_url, SCHEMA, table, key, key, live_only=False)) == every_row
    with psycopg.connect(source) as connection:
        keyless = Counter(connection.execute("SELECT name, value FROM fault_keyless").fetchall())
    copied = Counter((name, plain(value)) for name, value in
                     mirror.query(f'SELECT "name", "value" FROM "{SCHEMA}"."fault_keyless"'))
    assert copied == keyless
    waiting = mirror.query(f'SELECT table_name FROM "{SCHEMA}"."_cdc_watermarks" WHERE backfill_columns IS NOT NULL')
    assert waiting == []


def assert_lock_free(mirror: Mirror, killed: bool) -> None:
    """Released by a failed cycle; dropped with a killed one's connection (PostgreSQL, DuckDB's file lock), or
    expired (a Snowflake lease)."""
    if mirror.kind == "snowflake":
        leases = mirror.query(f'SELECT "expires_at" FROM "{SCHEMA}"."_cdc_locks" WHERE "holder" IS NOT NULL')
        if not killed:
            assert leases == []
            return
        assert len(leases) == 1  # a dead cycle cannot release its lease: it expires
        time.sleep(max(0.0, (leases[0][0] - utc_now()).total_seconds()) + 0.05)
    elif mirror.kind == "postgresql":
        deadline = time.monotonic() + 5
        while mirror.query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                           " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")[0][0]:
            assert time.monotonic() < deadline, "the advisory lock outlived its cycle"
            time.sleep(0.05)


@pytest.mark.parametrize("mode", ["raise", "kill"])
def test_every_fault_point_leaves_an_exact_mirror_after_the_next_cycle(airflow3_source: str, mirror: Mirror,
                                                                       mode: str) -> None:
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("CREATE TABLE fault_keyless (name text, value integer)")
        connection.execute("INSERT INTO fault_keyless VALUES ('first', 0), ('twice', 1), ('twice', 1)")
    assert mirror.sync(airflow3_source).ok
    always_reached = [point for point in POINTS if point not in LOG_CAPTURE_POINTS | HISTORY_POINTS]
    for step, point in enumerate(always_reached, start=1):
        change_source(airflow3_source, step)
        failed = mirror.run_failing(airflow3_source, f"{point}:{mode}")
        if mode == "kill":
            assert failed.returncode == -9, (point, failed.returncode, failed.stderr[-2000:])
        else:
            assert failed.returncode == 1, (point, failed.stderr[-2000:])
            assert f"fault injected at {point!r}" in failed.stdout, (point, failed.stdout[-2000:])
            errors = mirror.query(f'SELECT count(*) FROM "{SCHEMA}"."_cdc_watermarks" '
                                  "WHERE last_error LIKE '%fault injected%'")
            assert errors[0][0] >= 1, point
        assert_lock_free(mirror, killed=mode == "kill")
        recovered = mirror.sync(airflow3_source)
        assert recovered.ok, (point, recovered.failed)
        assert_exact_mirror(airflow3_source, mirror)


def test_a_transient_error_is_retried_within_the_bound_and_a_persistent_one_is_recorded(
        airflow3_source: str, mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    """The retry path of cdc_sync.table_attempts, on each destination: a transient error once, then always."""
    tables = ["dag_run"]  # a small table: the point is the retry path, not the load
    assert mirror.sync(airflow3_source, tables).ok
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("UPDATE dag_run SET state = 'failed', updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__7'")

    faults.reached.clear()
    monkeypatch.setenv("CDC_SYNC_FAULT", "merge:transient")
    started = time.monotonic()
    report = mirror.sync(airflow3_source, tables)
    assert report.ok, report.failed
    assert faults.reached["merge"] == 2  # failed once, then the retry went through
    assert time.monotonic() - started < BACKOFF_SECONDS * 2 + 10
    assert_runs(mirror, ok=2, failed=0)  # a retried table records one run, not its failed attempt
    assert failed_runs_of(mirror) == []
    assert mirror.query(f"""SELECT state FROM "{SCHEMA}"."dag_run" WHERE run_id = 'scheduled__7'""") == [("failed",)]

    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("UPDATE dag_run SET state = 'queued', updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__8'")
    faults.reached.clear()
    monkeypatch.setenv("CDC_SYNC_FAULT", "merge:transient-always")
    started = time.monotonic()
    report = mirror.sync(airflow3_source, tables)
    waited = time.monotonic() - started
    assert not report.ok and "fault injected at 'merge'" in report.failed["dag_run"]
    assert faults.reached["merge"] == ATTEMPTS
    assert waited >= BACKOFF_SECONDS * (1 + 2)  # backed off between the attempts (0.5 s, then 1 s)
    assert_runs(mirror, ok=2, failed=1)
    assert "fault injected at 'merge'" in failed_runs_of(mirror)[0]
    errors = mirror.query(f"""SELECT last_error FROM "{SCHEMA}"."_cdc_watermarks" WHERE table_name = 'dag_run'""")
    assert "fault injected at 'merge'" in errors[0][0]
    assert mirror.query(f"""SELECT state FROM "{SCHEMA}"."dag_run" WHERE run_id = 'scheduled__8'""") \
        == [("success",)]  # rolled back

    monkeypatch.delenv("CDC_SYNC_FAULT")
    assert mirror.sync(airflow3_source, tables).ok
    assert mirror.query(f"""SELECT state FROM "{SCHEMA}"."dag_run" WHERE run_id = 'scheduled__8'""") \
        == [("queued",)]


def assert_runs(mirror: Mirror, *, ok: int, failed: int) -> None:
    rows = dict(mirror.query(f'SELECT status, count(*) FROM "{SCHEMA}"."_cdc_runs" GROUP BY status'))
    assert (rows.get("ok", 0), rows.get("failed", 0)) == (ok, failed), rows


def failed_runs_of(mirror: Mirror) -> list[str]:
    return [row[0] for row in mirror.query(f"""SELECT error FROM "{SCHEMA}"."_cdc_runs" WHERE status = 'failed'""")]


def test_a_column_added_by_a_failed_cycle_is_still_backfilled(airflow3_source: str, mirror: Mirror,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Snowflake commits an ADD COLUMN on its own (the fakesnow session here does too): the failed cycle leaves the
    column in the mirror, and only the backfill remembered before the DDL makes the next cycle fill older rows."""
    tables = ["dag_run"]
    assert mirror.sync(airflow3_source, tables).ok
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("ALTER TABLE dag_run ADD COLUMN team text DEFAULT 'data'")  # no updated_at bumped
    monkeypatch.setenv("CDC_SYNC_FAULT", "column_ddl:raise")
    assert not mirror.sync(airflow3_source, tables).ok
    monkeypatch.delenv("CDC_SYNC_FAULT")
    assert mirror.sync(airflow3_source, tables).ok
    assert mirror.query(f'SELECT count(*), count("team") FROM "{SCHEMA}"."dag_run"') == [(50, 50)]
    assert mirror.query(f'SELECT backfill_columns FROM "{SCHEMA}"."_cdc_watermarks"') == [(None,)]
