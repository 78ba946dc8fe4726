"""The log capture mode end to end (cdc_sync.log_capture): a real Airflow 3 schema on PostgreSQL with wal_level=logical,
mirrored into DuckDB and PostgreSQL, exact after every kind of change; the same scenarios in the query mode where
they are cheap. Every slot a test made is dropped afterwards, even when it failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
import uuid
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

import cdc_sync
from cdc_sync import log_changes, log_spool
from cdc_sync.cli import main
from cdc_sync.sources.pgoutput import parse_lsn
from cdc_sync.sources.publication import LogNames
from tests.mirror_check import AIRFLOW_KEYS, assert_mirrored, mirror_query
from tests.test_core_cycle import scheduler_burst

# Slot names are global to the server: a name of this run's own, so that concurrent runs of the suite never collide.
SCHEMA = f"airflow_log_{uuid.uuid4().hex[:8]}"
TABLES = ["dag", "dag_run", "job", "task_instance", "serialized_dag"]
NAMES = LogNames.for_schema(SCHEMA)
KEYS = {**AIRFLOW_KEYS, "serialized_dag": ["id"]}


def sync(source: str, destination: str, capture: str = "log", **options):
    report = cdc_sync.sync(source, destination, SCHEMA, tables=TABLES, capture=capture, **options)
    assert report.ok, report.failed
    return report


def assert_exact(source: str, destination: str) -> None:
    for table in TABLES:
        assert_mirrored(source, destination, SCHEMA, table, KEYS[table])


ROOT = Path(__file__).resolve().parent.parent


def slot_position(source: str) -> int | None:
    with psycopg.connect(source) as connection:
        # This database's slot only: a concurrent run of these tests elsewhere on the server uses the same name.
        row = connection.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s "
                                 "AND database = current_database()", (NAMES.slot,)).fetchone()
    return None if row is None else parse_lsn(row[0])


def stored_positions(destination: str) -> dict[str, str | None]:
    return dict(mirror_query(destination, f'SELECT table_name, log_position FROM "{SCHEMA}"."_cdc_watermarks"'))


def killed_cycle(source: str, destination: str, point: str) -> None:
    """``cdc-sync run --capture log`` in a process of its own, SIGKILLed at a fault point."""
    command = [sys.executable, "-m", "tests.fault_run", "--", "run", "--source", source, "--destination", destination,
               "--schema", SCHEMA, "--tables", ",".join(TABLES), "--capture", "log", "--json"]
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "CDC_SYNC_FAULT": f"{point}:kill"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, result.stderr[-2000:]


@pytest.mark.parametrize("capture", ["log", "query"])
def test_a_scheduler_burst_deletes_and_a_truncate_are_mirrored_exactly(logical_source: str, destination: str,
                                                                       capture: str) -> None:
    first = sync(logical_source, destination, capture)
    assert (slot_position(logical_source) is not None) == (capture == "log")
    assert_exact(logical_source, destination)
    assert {t.table: t.rows_written for t in first.tables}["task_instance"] > 0

    scheduler_burst(logical_source)
    sync(logical_source, destination, capture)  # log: replays from the slot position of the first copy, harmless
    assert_exact(logical_source, destination)
    with psycopg.connect(logical_source, autocommit=True) as connection:
        connection.execute("DELETE FROM task_instance WHERE run_id = 'scheduled__3'")
        connection.execute("UPDATE dag_run SET state = 'success', updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__4'")
    second = {t.table: t for t in sync(logical_source, destination, capture).tables}
    assert second["task_instance"].rows_deleted == 4 and second["dag_run"].rows_written == 1
    assert_exact(logical_source, destination)
    before = slot_position(logical_source) or 0
    with psycopg.connect(logical_source, autocommit=True) as connection:
        connection.execute("TRUNCATE job")
        connection.execute("INSERT INTO job (dag_id, state, job_type, latest_heartbeat, hostname) "
                           "VALUES ('dag_1', 'running', 'SchedulerJob', now(), 'after-truncate')")
    sync(logical_source, destination, capture)
    assert_exact(logical_source, destination)
    assert mirror_query(destination, f'SELECT count(*) FROM "{SCHEMA}"."job" WHERE "_cdc_deleted_at" IS NULL') == [(1,)]
    if capture == "log":
        assert slot_position(logical_source) > before
        assert all(position is not None for position in stored_positions(destination).values())


@pytest.mark.parametrize("point", ["commit", "advance"])
def test_a_kill_before_the_commit_or_before_the_slot_advances_loses_and_repeats_nothing(
        logical_source: str, duckdb_destination: str, point: str) -> None:
    sync(logical_source, duckdb_destination)
    sync(logical_source, duckdb_destination)  # every table now holds a position past the first copy
    scheduler_burst(logical_source)
    stored, slot = stored_positions(duckdb_destination), slot_position(logical_source)
    killed_cycle(logical_source, duckdb_destination, point)
    assert slot_position(logical_source) == slot  # the slot never advanced
    if point == "advance":
        # The warehouse committed the burst and the new positions, then the process died.
        assert all(parse_lsn(after) > parse_lsn(stored[table]) for table, after in
                   stored_positions(duckdb_destination).items())
        assert_exact(logical_source, duckdb_destination)
    else:
        assert stored_positions(duckdb_destination)["task_instance"] == stored["task_instance"]
    replay = {t.table: t for t in sync(logical_source, duckdb_destination).tables}
    # After the kill at advance, the slot replays the burst, and every change of it is at or below the positions.
    if point == "advance":
        assert (replay["task_instance"].rows_read, replay["task_instance"].rows_written) == (0, 0)
    else:
        # 8 task instances took a new id (a delete of the old id and an upsert each), and 3 are new.
        assert (replay["task_instance"].rows_read, replay["task_instance"].rows_written) == (8 + 8 + 3, 11)
    assert_exact(logical_source, duckdb_destination)
    assert slot_position(logical_source) > slot


BIG_JSON = "(SELECT jsonb_object_agg(g::text, md5(g::text || %s)) FROM generate_series(1, 600) AS g)"


def write_big_values(source: str) -> None:
    """Values far over the 8 kB page (out-of-line TOAST, little compression) in jsonb and bytea columns."""
    with psycopg.connect(source, autocommit=True) as connection:
        connection.execute(f"UPDATE dag_run SET conf = {BIG_JSON}, updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__5'", ("conf",))
        connection.execute(f"UPDATE task_instance SET next_kwargs = {BIG_JSON}, executor_config = "
                           "decode(repeat(md5(task_id), 400), 'hex'), updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__5'", ("kwargs",))
        connection.execute("INSERT INTO dag_version (id, version_number, dag_id, created_at, last_updated) "
                           "VALUES ('00000000-0000-0000-0000-000000000001', 1, 'dag_1', now(), now())")
        connection.execute(f"INSERT INTO serialized_dag (id, dag_id, data, created_at, last_updated, dag_hash, "
                           f"dag_version_id) VALUES (gen_random_uuid(), 'dag_1', {BIG_JSON}, now(), now(), 'h1', "
                           "'00000000-0000-0000-0000-000000000001')", ("data",))


@pytest.mark.parametrize("capture", ["log", "query"])
def test_unchanged_toasted_values_stay_after_an_update_of_another_column(logical_source: str, destination: str,
                                                                         capture: str) -> None:
    write_big_values(logical_source)
    sync(logical_source, destination, capture)
    sync(logical_source, destination, capture)  # log: the big values arrive whole from the log, after the copy
    with psycopg.connect(logical_source, autocommit=True) as connection:
        connection.execute("UPDATE dag_run SET state = 'failed', updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__5'")
        connection.execute("UPDATE task_instance SET state = 'failed', updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__5'")
        connection.execute("UPDATE serialized_dag SET dag_hash = 'h2', last_updated = clock_timestamp()")
        sizes = connection.execute("SELECT pg_column_size(conf) FROM dag_run WHERE run_id = 'scheduled__5'").fetchone()
    assert sizes[0] > 8192
    report = {t.table: t for t in sync(logical_source, destination, capture).tables}
    assert report["task_instance"].rows_written == 4 and report["serialized_dag"].rows_written == 1
    assert_exact(logical_source, destination)
    big = mirror_query(destination, f'SELECT count(*) FROM "{SCHEMA}"."task_instance" '
                                    "WHERE run_id = 'scheduled__5' AND next_kwargs IS NOT NULL "
                                    "AND executor_config IS NOT NULL AND state = 'failed'")
    assert big == [(4,)]


@pytest.mark.parametrize("capture", ["log", "query"])
def test_a_transaction_open_across_a_cycle_and_a_rolled_back_savepoint(logical_source: str, duckdb_destination: str,
                                                                       capture: str) -> None:
    sync(logical_source, duckdb_destination, capture)
    with psycopg.connect(logical_source) as writer:
        writer.execute("UPDATE dag_run SET state = 'queued', updated_at = clock_timestamp() "
                       "WHERE run_id = 'scheduled__6'")
        with pytest.raises(psycopg.errors.RaiseException), writer.transaction():  # a savepoint, rolled back
            writer.execute("UPDATE dag_run SET state = 'rolled back', updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__7'")
            writer.execute("DELETE FROM task_instance WHERE run_id = 'scheduled__7'")
            writer.execute("DO $$ BEGIN RAISE EXCEPTION 'roll back to the savepoint'; END $$")
        writer.execute("UPDATE task_instance SET state = 'up_for_retry', updated_at = clock_timestamp() "
                       "WHERE run_id = 'scheduled__6'")
        open_cycle = {t.table: t for t in sync(logical_source, duckdb_destination, capture).tables}
        assert open_cycle["dag_run"].rows_written == 0 and open_cycle["task_instance"].rows_written == 0
        writer.commit()
    sync(logical_source, duckdb_destination, capture)
    assert_exact(logical_source, duckdb_destination)
    states = mirror_query(duckdb_destination, f'SELECT run_id, state FROM "{SCHEMA}"."dag_run" '
                                              "WHERE run_id IN ('scheduled__6', 'scheduled__7') ORDER BY run_id")
    assert states[0] == ("scheduled__6", "queued") and states[1][1] != "rolled back"


def test_no_cycle_reads_the_slot_while_another_cycle_holds_it(logical_source: str, postgres_destination: str) -> None:
    """Tables have locks of their own, so the slot (one per schema) has one too, held by a log cycle from before
    its first read of the slot until the slot has advanced: a second log cycle gives up without reading it."""
    from cdc_sync.cycle_locks import LOG_SLOT_LOCK
    from cdc_sync.destinations import open_destination
    from cdc_sync.errors import CycleAlreadyRunningError
    from cdc_sync.urls import parse_url

    sync(logical_source, postgres_destination)
    scheduler_burst(logical_source)
    slot = slot_position(logical_source)
    with open_destination(parse_url(postgres_destination, role="destination"), {}) as holder:
        assert holder.try_lock(SCHEMA, LOG_SLOT_LOCK)  # as a log cycle in progress holds it
        with pytest.raises(CycleAlreadyRunningError, match="replication slot"):
            cdc_sync.sync(logical_source, postgres_destination, SCHEMA, tables=TABLES, capture="log")
        holder.unlock(SCHEMA, LOG_SLOT_LOCK)
    assert slot_position(logical_source) == slot
    sync(logical_source, postgres_destination)
    sync(logical_source, postgres_destination)
    assert_exact(logical_source, postgres_destination)
    assert slot_position(logical_source) > slot


def test_a_resync_of_one_table_in_log_mode_copies_it_and_the_log_carries_on_for_all(
        logical_source: str, duckdb_destination: str) -> None:
    sync(logical_source, duckdb_destination, deletes="hard")
    scheduler_burst(logical_source)
    sync(logical_source, duckdb_destination, deletes="hard")
    positions = stored_positions(duckdb_destination)
    report = cdc_sync.resync(logical_source, duckdb_destination, SCHEMA, tables=TABLES, capture="log",
                             deletes="hard", only=["dag_run"])
    assert report.ok and [t.table for t in report.tables] == ["dag_run"] and report.tables[0].rows_read > 50
    after = stored_positions(duckdb_destination)
    assert parse_lsn(after["dag_run"]) <= parse_lsn(positions["dag_run"])  # the slot's position: replayed next
    assert {table: after[table] for table in after if table != "dag_run"} == \
        {table: positions[table] for table in positions if table != "dag_run"}
    with psycopg.connect(logical_source, autocommit=True) as connection:
        connection.execute("DELETE FROM task_instance WHERE run_id = 'scheduled__9'")
        connection.execute("DELETE FROM dag_run WHERE run_id = 'scheduled__9'")
        connection.execute("TRUNCATE job")
    sync(logical_source, duckdb_destination, deletes="hard")
    assert_exact(logical_source, duckdb_destination)
    every_row = mirror_query(duckdb_destination, f'SELECT (SELECT count(*) FROM "{SCHEMA}"."job"), '
                                                 f'(SELECT count(*) FROM "{SCHEMA}"."dag_run" '
                                                 "WHERE run_id = 'scheduled__9')")
    assert every_row == [(0, 0)]  # hard deletes: gone, not marked


def test_the_retained_wal_bound_warns_past_half_and_drops_past_it() -> None:
    from cdc_sync.log_capture import retained_wal_verdict

    mib = 1 << 20
    assert retained_wal_verdict(None, None, 100 * mib) is None
    assert retained_wal_verdict(50 * mib, "reserved", 100 * mib) is None
    warning = retained_wal_verdict(60 * mib, "reserved", 100 * mib)
    assert not warning.drop and "keeps 60 MiB of WAL, over half of max_retained_wal (100 MiB)" in warning.message
    assert retained_wal_verdict(101 * mib, "extended", 100 * mib).drop
    assert retained_wal_verdict(0, "lost", 100 * mib).drop


def test_an_unread_slot_past_half_the_bound_is_warned_about_and_left(logical_source: str) -> None:
    """Between half the bound and the bound a watermark-mode cycle only warns; under half it says nothing."""
    from cdc_sync.config import build_config
    from cdc_sync.log_capture import bound_unread_slot
    from cdc_sync.sources import open_source
    from cdc_sync.urls import make_url

    cdc_sync.sync(logical_source, "duckdb:///:memory:", SCHEMA, tables=TABLES, capture="log")
    with psycopg.connect(logical_source, autocommit=True) as connection:  # WAL the slot must keep
        connection.execute("CREATE TABLE wal_filler AS SELECT g, md5(g::text) FROM generate_series(1, 20000) AS g")
    with open_source(make_url(logical_source)) as source:
        retained, _status = source.replication_slot_wal(NAMES.slot)
        assert retained is not None and retained > 0
        quiet = build_config(source=logical_source, schema=SCHEMA, max_retained_wal=2 * retained + (1 << 20))
        assert bound_unread_slot(quiet, source) == []
        # A bound the slot's WAL lies between half of and all of (nothing writes meanwhile).
        halfway = build_config(source=logical_source, schema=SCHEMA, max_retained_wal=retained * 3 // 2)
        [warning] = bound_unread_slot(halfway, source)
    assert warning.startswith(f"cdc_sync's replication slot {NAMES.slot} keeps ")
    assert ", over half of max_retained_wal (" in warning
    assert warning.endswith("drop it with `cdc-sync capture drop` if the mirror stays in this mode; past the bound, "
                            "a cycle drops it.")
    assert slot_position(logical_source) is not None


def test_a_slot_over_the_retained_wal_bound_is_dropped_and_the_cycle_resyncs_in_query_mode(
        logical_source: str, duckdb_destination: str) -> None:
    sync(logical_source, duckdb_destination)
    scheduler_burst(logical_source)
    with psycopg.connect(logical_source, autocommit=True) as connection:  # WAL the slot must keep
        connection.execute("CREATE TABLE wal_filler AS SELECT g, md5(g::text) FROM generate_series(1, 20000) AS g")
    # Through the command line, which takes the bound as PostgreSQL writes sizes.
    result = CliRunner().invoke(main, ["run", "--source", logical_source, "--destination", duckdb_destination,
                                       "--schema", SCHEMA, "--tables", ",".join(TABLES), "--capture", "log",
                                       "--max-retained-wal", "1MB", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert slot_position(logical_source) is None
    assert any("over max_retained_wal (1 MiB): it is dropped" in warning for warning in report["warnings"])
    assert report["tables"]["task_instance"]["rows_read"] > 200  # every row re-read
    assert set(stored_positions(duckdb_destination).values()) == {None}
    assert_exact(logical_source, duckdb_destination)
    sync(logical_source, duckdb_destination)  # log capture again: a new slot and a first copy
    assert slot_position(logical_source) is not None
    assert all(stored_positions(duckdb_destination).values())
    assert_exact(logical_source, duckdb_destination)


def test_a_slot_nothing_reads_in_query_mode_keeps_the_retained_wal_bound(logical_source: str,
                                                                      duckdb_destination: str) -> None:
    """A mirror switched back to the watermark mode leaves its slot, which nothing advances any more: under the
    bound it is left alone, past it the query cycle drops it (and its publication), and a later log cycle starts a
    new slot with nothing lost."""
    sync(logical_source, duckdb_destination)
    quiet = sync(logical_source, duckdb_destination, "query", max_retained_wal=1 << 40)  # far under the bound
    assert slot_position(logical_source) is not None and not quiet.warnings
    scheduler_burst(logical_source)
    with psycopg.connect(logical_source, autocommit=True) as connection:  # WAL the slot must keep
        connection.execute("CREATE TABLE wal_filler AS SELECT g, md5(g::text) FROM generate_series(1, 20000) AS g")
    report = sync(logical_source, duckdb_destination, "query", max_retained_wal=1 << 20)
    assert slot_position(logical_source) is None
    [warning] = [w for w in report.warnings if NAMES.slot in w]
    assert warning.startswith(f"cdc_sync's replication slot {NAMES.slot} keeps ")
    assert (f"over max_retained_wal (1 MiB), and nothing advances it while cycles run in the watermark mode: "
            f"dropped replication slot {NAMES.slot} and dropped publication {NAMES.publication}") in warning
    assert_exact(logical_source, duckdb_destination)
    assert not sync(logical_source, duckdb_destination, "query", max_retained_wal=1 << 20).warnings
    with psycopg.connect(logical_source, autocommit=True) as connection:
        connection.execute("UPDATE dag_run SET state = 'failed', updated_at = clock_timestamp() "
                           "WHERE run_id = 'scheduled__1'")
    sync(logical_source, duckdb_destination)  # log mode again: a new slot, the change read since the query position
    assert slot_position(logical_source) is not None
    assert_exact(logical_source, duckdb_destination)


def test_a_nearly_full_spool_disk_stops_the_cycle_before_it_writes_and_loses_nothing(
        logical_source: str, duckdb_destination: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sync(logical_source, duckdb_destination)
    slot_before, positions_before = slot_position(logical_source), stored_positions(duckdb_destination)
    scheduler_burst(logical_source)
    monkeypatch.setattr(log_spool, "SPOOL_MIN_FREE_BYTES", 1 << 62)  # more than any disk has free
    result = CliRunner().invoke(main, ["run", "--source", logical_source, "--destination", duckdb_destination,
                                       "--schema", SCHEMA, "--tables", ",".join(TABLES), "--capture", "log"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "The log capture's spool directory " in result.output
    assert "Point TMPDIR at a larger disk, or run cycles more often." in result.output
    assert slot_position(logical_source) == slot_before
    assert stored_positions(duckdb_destination) == positions_before
    monkeypatch.undo()
    sync(logical_source, duckdb_destination)  # the slot still held every change
    assert_exact(logical_source, duckdb_destination)


def test_a_slot_dropped_behind_the_cycles_back_makes_the_next_cycle_read_the_changes_through_the_query_path(
        logical_source: str, duckdb_destination: str) -> None:
    sync(logical_source, duckdb_destination)
    sync(logical_source, duckdb_destination)
    with psycopg.connect(logical_source, autocommit=True) as connection:
        connection.execute("SELECT pg_drop_replication_slot(%s)", (NAMES.slot,))
    scheduler_burst(logical_source)  # while no slot keeps the WAL
    report = {t.table: t for t in sync(logical_source, duckdb_destination).tables}
    # Read since the query position (the new slot does not hold the burst): the 8 retried and 3 new rows, no copy.
    assert report["task_instance"].rows_read == 8 + 3
    assert_exact(logical_source, duckdb_destination)
    with psycopg.connect(logical_source, autocommit=True) as connection:
        connection.execute("DELETE FROM task_instance WHERE run_id = 'scheduled__8'")
    after = {t.table: t for t in sync(logical_source, duckdb_destination).tables}
    assert after["task_instance"].rows_deleted == 4 and after["task_instance"].rows_read == 4  # the new slot's log
    assert_exact(logical_source, duckdb_destination)


def test_a_transaction_larger_than_the_memory_bound_is_applied_exactly_in_bounded_memory(
        logical_source: str, duckdb_destination: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One source transaction of 25,000 changes to job (an `airflow db clean`, scaled down with the bounds): spooled
    1,000 rows at a time, applied 2,500 changes at a time; the Python heap of the cycle that reads it stays under a
    third of what holding the whole transaction took."""
    monkeypatch.setattr(log_spool, "SPOOL_BATCH_ROWS", 1_000)
    monkeypatch.setattr(log_changes, "SEGMENT_CHANGES", 2_500)
    sync(logical_source, duckdb_destination)
    with psycopg.connect(logical_source) as connection:  # a single transaction
        connection.execute("INSERT INTO job (dag_id, state, job_type, latest_heartbeat, hostname, unixname) "
                           "SELECT 'dag_' || g % 7, 'running', 'LocalTaskJob', now(), 'worker-' || g, 'airflow' "
                           "FROM generate_series(1, 16000) AS g")
        connection.execute("UPDATE job SET state = 'success', end_date = now() WHERE id % 3 = 0")
        connection.execute("DELETE FROM job WHERE id % 5 = 0")
    tracemalloc.start()
    try:
        report = {t.table: t for t in sync(logical_source, duckdb_destination).tables}
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_exact(logical_source, duckdb_destination)
    assert report["job"].rows_read > 16_000 + 5_000 + 3_000
    assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MiB"  # holding it whole: 25.5 MiB


def test_a_log_cycle_never_imports_pyarrow_compute(logical_source: str, duckdb_destination: str) -> None:
    """Its import builds a wrapper for every Arrow kernel (50-70 ms): in a scheduled log cycle with nothing to apply,
    a sixth of the whole process. The spool calls the kernels by name instead (cdc_sync.arrow_kernels)."""
    sync(logical_source, duckdb_destination)
    code = ("import sys\nfrom cdc_sync.cli import main\nmain(sys.argv[1:], standalone_mode=False)\n"
            "print('pyarrow.compute' in sys.modules, file=sys.stderr)\n")
    command = [sys.executable, "-c", code, "run", "--source", logical_source, "--destination", duckdb_destination,
               "--schema", SCHEMA, "--tables", ",".join(TABLES), "--capture", "log", "--json"]
    for change in (scheduler_burst, None):  # a cycle applying a burst (updates, inserts, deletes), then an idle one
        if change is not None:
            change(logical_source)
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1] == "False"
        written = json.loads(result.stdout)["tables"]["task_instance"]["rows_written"]
        assert (written > 0) == (change is not None)
    assert_exact(logical_source, duckdb_destination)
