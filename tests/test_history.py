"""History tables (cdc_sync.history, cdc_sync.history_log): the versions in ``task_instance__history`` are compared
with the writes each test made on a real Airflow 3 schema in PostgreSQL (their states, and the WAL positions and
clock times that bound each write), never with constants. Every slot a test made is dropped afterwards."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

import cdc_sync
from cdc_sync import history_log
from cdc_sync.errors import TableSyncError
from cdc_sync.sources.pgoutput import parse_lsn
from tests.mirror_check import AIRFLOW_KEYS, assert_mirrored, mirror_query

SCHEMA = "airflow_history"
TABLES = ["dag_run", "task_instance"]
ROOT = Path(__file__).resolve().parent.parent
COLUMNS = "state, _cdc_op, _cdc_lsn, _cdc_commit_ts, _cdc_valid_from, _cdc_valid_to, _cdc_synced_at"


def sync(source: str, destination: str, capture: str, **options):
    report = cdc_sync.sync(source, destination, SCHEMA, tables=TABLES, capture=capture, history=True, **options)
    assert report.ok, report.failed
    return report


def a_task_instance(source: str) -> tuple:
    with psycopg.connect(source) as connection:
        return connection.execute("SELECT dag_id, task_id, run_id, map_index FROM task_instance "
                                  "ORDER BY dag_id, task_id, run_id, map_index LIMIT 1").fetchone()


@dataclass
class Write:
    """One committed write as the source saw it: the state written, and bounds of its WAL position and commit."""

    state: str | None
    lsn_after: int
    lsn_before: int
    committed_after: datetime
    committed_before: datetime


KEY_SQL = "dag_id = %s AND task_id = %s AND run_id = %s AND map_index = %s"


def write(source: str, key: tuple, state: str | None, savepoint_state: str | None = None,
          new_id: bool = False) -> Write:
    """Set the task instance's state in a transaction of its own connection (None: delete it); with
    ``savepoint_state``, first write that state in a savepoint that is rolled back; with ``new_id``, give the task
    instance a new id too (Airflow 3 does on a retry or clear)."""
    with psycopg.connect(source) as connection:
        lsn_after, committed_after = connection.execute(
            "SELECT pg_current_wal_insert_lsn()::text, clock_timestamp()").fetchone()
        if savepoint_state is not None:
            with pytest.raises(psycopg.errors.RaiseException), connection.transaction():
                connection.execute(f"UPDATE task_instance SET state = %s WHERE {KEY_SQL}", (savepoint_state, *key))
                connection.execute("DO $$ BEGIN RAISE EXCEPTION 'roll back to the savepoint'; END $$")
        if state is None:
            connection.execute(f"DELETE FROM task_instance WHERE {KEY_SQL}", key)
        else:
            new_id_sql = ", id = gen_random_uuid()" if new_id else ""
            connection.execute(f"UPDATE task_instance SET state = %s, updated_at = clock_timestamp(){new_id_sql} "
                               f"WHERE {KEY_SQL}", (state, *key))
        connection.commit()
        connection.autocommit = True
        lsn_before, committed_before = connection.execute(
            "SELECT pg_current_wal_insert_lsn()::text, clock_timestamp()").fetchone()
    return Write(state, parse_lsn(lsn_after), parse_lsn(lsn_before), committed_after, committed_before)


def versions(destination: str, key: tuple) -> list[tuple]:
    return mirror_query(destination, f'SELECT {COLUMNS} FROM "{SCHEMA}"."task_instance__history" WHERE {KEY_SQL} '
                                     "ORDER BY _cdc_valid_from, _cdc_valid_to NULLS LAST", key)


def assert_chained(rows: list[tuple]) -> None:
    """Each version is valid until the next begins; only the last may be open, and a delete is an instant."""
    for (*_, valid_from, valid_to, _synced), (*_, next_from, _next_to, _next_synced) in itertools.pairwise(rows):
        assert valid_to == next_from and valid_from <= valid_to
    for _state, op, *_, valid_from, valid_to, _synced in rows:
        if op == "delete":
            assert valid_to == valid_from
    assert sum(row[5] is None for row in rows) == (0 if rows[-1][1] == "delete" else 1)


def assert_logged(row: tuple, written: Write, op: str) -> None:
    state, row_op, lsn, commit_ts, valid_from, _valid_to, _synced = row
    assert (row_op, valid_from) == (op, commit_ts)
    assert written.lsn_after <= parse_lsn(lsn) < written.lsn_before  # a record starts where the WAL stood
    assert written.committed_after <= commit_ts <= written.committed_before
    if op != "delete":
        assert state == written.state


@pytest.mark.parametrize("destination_kind", ["duckdb", "postgresql"])
def test_log_mode_records_every_committed_version(logical_source: str, destination_kind: str,
                                                  request: pytest.FixtureRequest) -> None:
    destination = request.getfixturevalue(f"{'duckdb' if destination_kind == 'duckdb' else 'postgres'}_destination")
    copied = sync(logical_source, destination, "log")
    key = a_task_instance(logical_source)
    first = versions(destination, key)
    # The first copy: one open version of each row, starting at its cycle's time.
    assert len(first) == 1 and first[0][1:4] == ("insert", None, None) and first[0][5] is None
    assert first[0][4] == first[0][6] and copied.started_at <= first[0][4] <= copied.finished_at
    live = mirror_query(destination, f'SELECT count(*) FROM "{SCHEMA}"."task_instance" WHERE "_cdc_deleted_at" IS NULL')
    assert mirror_query(destination, f'SELECT count(*) FROM "{SCHEMA}"."task_instance__history"') == live

    writes = [write(logical_source, key, "queued"),
              write(logical_source, key, "running", savepoint_state="up_for_retry", new_id=True),
              write(logical_source, key, "success")]
    sync(logical_source, destination, "log")
    rows = versions(destination, key)
    assert len(rows) == 4 and [row[0] for row in rows[1:]] == [w.state for w in writes]
    for row, written in zip(rows[1:], writes, strict=True):
        assert_logged(row, written, "update")
    assert [parse_lsn(row[2]) for row in rows[1:]] == sorted(parse_lsn(row[2]) for row in rows[1:])
    assert "up_for_retry" not in [row[0] for row in rows]
    assert_chained(rows)
    assert_mirrored(logical_source, destination, SCHEMA, "task_instance", AIRFLOW_KEYS["task_instance"])

    deleted = write(logical_source, key, None)
    sync(logical_source, destination, "log")
    rows = versions(destination, key)
    assert len(rows) == 5 and rows[-1][0] == "success"  # the delete version keeps the last values
    assert_logged(rows[-1], deleted, "delete")
    assert_chained(rows)
    assert_mirrored(logical_source, destination, SCHEMA, "task_instance", AIRFLOW_KEYS["task_instance"])

    # A TRUNCATE ends every open version with a delete version at its commit; nothing is left open.
    with psycopg.connect(logical_source, autocommit=True) as connection:
        live_before = connection.execute("SELECT count(*) FROM task_instance").fetchone()[0]
        connection.execute("TRUNCATE task_instance CASCADE")
    sync(logical_source, destination, "log")
    history = f'"{SCHEMA}"."task_instance__history"'
    assert mirror_query(destination, f"SELECT count(*) FROM {history} WHERE _cdc_valid_to IS NULL") == [(0,)]
    truncated = mirror_query(destination, f"SELECT count(*), count(DISTINCT _cdc_lsn) FROM {history} "
                                          "WHERE _cdc_op = 'delete' AND _cdc_lsn <> %s", (rows[-1][2],))
    assert truncated == [(live_before, 1)]


def test_log_history_keeps_unsent_toasted_values_and_hashes_as_the_mirror(logical_source: str,
                                                                            duckdb_destination: str) -> None:
    """An UPDATE of another column sends a large unchanged value as 'unchanged' (TOAST): its versions hold the value
    all the same, from the mirror or from an earlier version among the changes; a hashed column is hashed alike."""
    options = {"hash_columns": ["task_instance.hostname"]}
    key = a_task_instance(logical_source)
    big = "(SELECT jsonb_object_agg(g::text, md5(g::text)) FROM generate_series(1, 600) AS g)"
    with psycopg.connect(logical_source, autocommit=True) as connection:
        connection.execute(f"UPDATE task_instance SET next_kwargs = {big} WHERE {KEY_SQL}", key)
    sync(logical_source, duckdb_destination, "log", **options)
    with psycopg.connect(logical_source, autocommit=True) as connection:
        connection.execute(f"UPDATE task_instance SET next_kwargs = {big} || '{{\"changed\": 1}}' WHERE {KEY_SQL}",
                           key)
    sync(logical_source, duckdb_destination, "log", **options)  # the big value arrives whole from the log
    write(logical_source, key, "queued")  # these two send it as unchanged
    write(logical_source, key, "running")
    new_key = (*key[:3], 1000)  # a task instance inserted with a big value, then updated, within one cycle
    with psycopg.connect(logical_source, autocommit=True) as connection:
        connection.execute(f"CREATE TEMPORARY TABLE copied AS SELECT * FROM task_instance WHERE {KEY_SQL}", key)
        connection.execute(f"UPDATE copied SET id = gen_random_uuid(), map_index = 1000, next_kwargs = {big}")
        connection.execute("INSERT INTO task_instance SELECT * FROM copied")
    write(logical_source, new_key, "scheduled")
    sync(logical_source, duckdb_destination, "log", **options)
    inserted = mirror_query(duckdb_destination, f'SELECT _cdc_op, state, length(CAST(next_kwargs AS TEXT)) '
                                                f'FROM "{SCHEMA}"."task_instance__history" WHERE {KEY_SQL} '
                                                "ORDER BY _cdc_valid_from", new_key)
    assert [row[:2] for row in inserted] == [("insert", "running"), ("update", "scheduled")]
    assert inserted[0][2] == inserted[1][2] > 8192
    with psycopg.connect(logical_source) as connection:
        plain_hostname = connection.execute(f"SELECT hostname FROM task_instance WHERE {KEY_SQL}", key).fetchone()[0]
    mirrored = mirror_query(duckdb_destination, f'SELECT CAST(next_kwargs AS TEXT), hostname FROM "{SCHEMA}".'
                                                f'"task_instance" WHERE {KEY_SQL}', key)
    kept = mirror_query(duckdb_destination, f'SELECT state, CAST(next_kwargs AS TEXT), hostname '
                                            f'FROM "{SCHEMA}"."task_instance__history" WHERE {KEY_SQL} '
                                            "ORDER BY _cdc_valid_from", key)
    assert [row[0] for row in kept[-2:]] == ["queued", "running"] and len(kept) == 4
    assert all((text, hostname) == mirrored[0] for _, text, hostname in kept[1:])
    assert "changed" in mirrored[0][0] and len(mirrored[0][0]) > 8192
    assert mirrored[0][1] != plain_hostname and plain_hostname


def test_log_history_recorded_in_segments_is_the_same_history(logical_source: str, duckdb_destination: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A cycle's versions are recorded in segments of whole transactions, so memory holds one segment: an unchanged
    TOASTed value set in an earlier segment is taken from there (not from the mirror, which is older), a delete
    finds the version an earlier segment recorded, and two versions of one transaction stay in one segment."""
    key = a_task_instance(logical_source)
    sync(logical_source, duckdb_destination, "log")
    segments: list[int] = []
    record = history_log._record_segment
    monkeypatch.setattr(history_log, "HISTORY_SEGMENT_CHANGES", 1)
    monkeypatch.setattr(history_log, "_record_segment",
                        lambda *args: (segments.append(len(args[3])), record(*args))[1])
    big = "(SELECT jsonb_object_agg(g::text, md5(g::text)) FROM generate_series(1, 600) AS g)"
    with psycopg.connect(logical_source, autocommit=True) as connection:  # sends the big value whole
        connection.execute(f"UPDATE task_instance SET next_kwargs = {big} WHERE {KEY_SQL}", key)
        [big_text] = connection.execute(f"SELECT next_kwargs::text FROM task_instance WHERE {KEY_SQL}", key).fetchone()
    write(logical_source, key, "queued")  # sends it as unchanged, in the next segment
    with psycopg.connect(logical_source) as connection:  # two versions in one transaction, one segment
        connection.execute(f"UPDATE task_instance SET state = 'running' WHERE {KEY_SQL}", key)
        connection.execute(f"UPDATE task_instance SET state = 'success' WHERE {KEY_SQL}", key)
    deleted = write(logical_source, key, None)
    sync(logical_source, duckdb_destination, "log")
    assert [count for count in segments if count] == [1, 1, 2, 1]
    rows = mirror_query(duckdb_destination, f'SELECT _cdc_op, state, CAST(next_kwargs AS TEXT) '
                                            f'FROM "{SCHEMA}"."task_instance__history" WHERE {KEY_SQL} '
                                            "ORDER BY _cdc_valid_from, _cdc_valid_to NULLS LAST", key)
    assert len(big_text) > 8192
    assert [row[:2] for row in rows[1:]] == [("update", rows[0][1]), ("update", "queued"), ("update", "running"),
                                             ("update", "success"), ("delete", "success")]
    assert all(text == big_text for _, _, text in rows[1:]) and rows[0][2] != big_text
    assert_chained(versions(duckdb_destination, key))
    assert_logged(versions(duckdb_destination, key)[-1], deleted, "delete")


def cycle_in_process(source: str, destination: str, fault: str, capture: str = "log") -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "tests.fault_run", "--", "run", "--source", source, "--destination", destination,
               "--schema", SCHEMA, "--tables", ",".join(TABLES), "--capture", capture, "--history", "--json"]
    return subprocess.run(command, cwd=ROOT, env={**os.environ, "CDC_SYNC_FAULT": fault}, capture_output=True,
                          text=True, timeout=120)


def history_rows(destination: str) -> list[tuple]:
    return mirror_query(destination, f'SELECT dag_id, task_id, run_id, map_index, {COLUMNS} '
                                     f'FROM "{SCHEMA}"."task_instance__history" ORDER BY 1, 2, 3, 4, 9, 10')


def test_a_failed_cycle_leaves_no_half_history_and_a_replay_no_duplicate(logical_source: str,
                                                                         duckdb_destination: str) -> None:
    """A failure before the commit (raised at the history point, or a kill at the commit) leaves mirror and history
    as they were; a kill after the commit, before the slot advances, is replayed: nothing is recorded twice, even
    when the stored position is set back so that the replayed changes are applied again."""
    sync(logical_source, duckdb_destination, "log")
    key = a_task_instance(logical_source)
    recorded: list[Write] = []
    for step, fault in enumerate(["history:raise", "commit:kill", "advance:kill"]):
        writes = [write(logical_source, key, f"queued_{step}"), write(logical_source, key, f"running_{step}")]
        before = history_rows(duckdb_destination)
        positions = watermark_positions(duckdb_destination)
        failed = cycle_in_process(logical_source, duckdb_destination, fault)
        assert failed.returncode == (-9 if fault.endswith("kill") else 1), failed.stderr[-2000:]
        if fault == "advance:kill":  # the warehouse committed, the slot did not advance
            assert len(history_rows(duckdb_destination)) == len(before) + 2
            set_positions(duckdb_destination, positions)  # the next cycle applies the same changes again
        else:
            assert history_rows(duckdb_destination) == before
            assert watermark_positions(duckdb_destination) == positions
        sync(logical_source, duckdb_destination, "log")
        assert_mirrored(logical_source, duckdb_destination, SCHEMA, "task_instance", AIRFLOW_KEYS["task_instance"])
        recorded += writes
        rows = versions(duckdb_destination, key)
        assert [row[0] for row in rows[1:]] == [w.state for w in recorded]
        for row, written in zip(rows[1:], recorded, strict=True):
            assert_logged(row, written, "update")
        assert_chained(rows)
        assert len(history_rows(duckdb_destination)) == len(before) + 2


def watermark_positions(destination: str) -> dict[str, str]:
    return dict(mirror_query(destination, f'SELECT table_name, log_position FROM "{SCHEMA}"."_cdc_watermarks"'))


def set_positions(destination: str, positions: dict[str, str]) -> None:
    import duckdb

    connection = duckdb.connect(destination.removeprefix("duckdb:///"))
    for table, position in positions.items():
        connection.execute(f'UPDATE "{SCHEMA}"."_cdc_watermarks" SET log_position = ? WHERE table_name = ?',
                           (position, table))
    connection.close()


def test_query_mode_records_the_versions_each_cycle_saw(logical_source: str, duckdb_destination: str) -> None:
    cycles = [sync(logical_source, duckdb_destination, "query")]
    key = a_task_instance(logical_source)
    write(logical_source, key, "queued")
    cycles.append(sync(logical_source, duckdb_destination, "query"))
    write(logical_source, key, "running")  # overwritten before any cycle sees it
    write(logical_source, key, "success")
    cycles.append(sync(logical_source, duckdb_destination, "query"))
    write(logical_source, key, None)
    cycles.append(sync(logical_source, duckdb_destination, "query"))
    rows = versions(duckdb_destination, key)
    assert [(row[0], row[1]) for row in rows] == [(rows[0][0], "insert"), ("queued", "update"),
                                                  ("success", "update"), ("success", "delete")]
    assert all(row[2] is None and row[3] is None and row[4] == row[6] for row in rows)  # no LSN, no commit time
    # The history holds the mirror's columns (so secret columns are left out alike), and its own.
    columns = "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
    mirrored = {name for (name,) in mirror_query(duckdb_destination, columns, (SCHEMA, "task_instance"))}
    kept = {name for (name,) in mirror_query(duckdb_destination, columns, (SCHEMA, "task_instance__history"))}
    assert kept == mirrored - {"_cdc_deleted_at"} | {"_cdc_op", "_cdc_lsn", "_cdc_commit_ts", "_cdc_valid_from",
                                                     "_cdc_valid_to"}
    for row, cycle in zip(rows, cycles, strict=True):  # each version starts at the time of the cycle that saw it
        assert cycle.started_at <= row[4] <= cycle.finished_at
    assert_chained(rows)
    # A cycle that sees no change records nothing; nor does a resync of unchanged rows, and it keeps the history.
    count = len(history_rows(duckdb_destination))
    sync(logical_source, duckdb_destination, "query")
    assert len(history_rows(duckdb_destination)) == count
    before = history_rows(duckdb_destination)
    write(logical_source, a_task_instance(logical_source), "resynced")
    assert cdc_sync.resync(logical_source, duckdb_destination, SCHEMA, tables=TABLES, capture="query",
                           history=True).ok
    after = history_rows(duckdb_destination)
    assert after[:len(before)] != before and len(after) == len(before) + 1  # one version closed, one added
    assert [row[4:6] for row in after if row[4] == "resynced"] == [("resynced", "update")]
    assert_chained(versions(duckdb_destination, a_task_instance(logical_source)))


def test_a_new_source_column_reaches_the_history_and_a_foreign_history_table_is_refused(
        airflow3_source: str, duckdb_destination: str) -> None:
    # History turned on for a mirror that already holds rows: it starts from them, valid from their last write.
    first = cdc_sync.sync(airflow3_source, duckdb_destination, SCHEMA, tables=TABLES, capture="query")
    assert first.ok, first.failed
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("UPDATE dag_run SET state = 'queued', updated_at = clock_timestamp() "
                           "WHERE run_id = (SELECT max(run_id) FROM dag_run)")
    sync(airflow3_source, duckdb_destination, "query")
    history, mirror = f'"{SCHEMA}"."dag_run__history"', f'"{SCHEMA}"."dag_run"'

    def versions_of(which: str) -> list[tuple]:
        return mirror_query(duckdb_destination, "SELECT h._cdc_op, h.state, h._cdc_valid_to IS NULL, "
                                                f"h._cdc_valid_from = m._cdc_synced_at FROM {history} AS h "
                                                f"JOIN {mirror} AS m USING (run_id) "
                                                f"WHERE run_id = (SELECT {which}(run_id) FROM {mirror})")

    # The row that cycle wrote has its version from the cycle; one it did not write is seeded, valid from its last
    # write (the first cycle's).
    assert versions_of("max") == [("insert", "queued", True, True)]
    unchanged = versions_of("min")
    assert len(unchanged) == 1 and unchanged[0][0] == "insert" and unchanged[0][2:] == (True, True)
    assert first.started_at <= mirror_query(duckdb_destination, f"SELECT min(_cdc_valid_from) FROM {history}")[0][0]
    live = mirror_query(duckdb_destination, f'SELECT count(*) FROM "{SCHEMA}"."dag_run"')
    assert mirror_query(duckdb_destination, f"SELECT count(DISTINCT run_id) FROM {history} "
                                            "WHERE _cdc_valid_to IS NULL") == live
    with psycopg.connect(airflow3_source, autocommit=True) as connection:
        connection.execute("ALTER TABLE dag_run ADD COLUMN upgrade_note text")
        connection.execute("UPDATE dag_run SET upgrade_note = 'after the upgrade', updated_at = clock_timestamp() "
                           "WHERE run_id = (SELECT min(run_id) FROM dag_run)")
    sync(airflow3_source, duckdb_destination, "query")
    noted = mirror_query(duckdb_destination, f'SELECT _cdc_op FROM "{SCHEMA}"."dag_run__history" '
                                             "WHERE upgrade_note = 'after the upgrade'")
    assert noted == [("update",)]

    import duckdb

    # An Airflow upgrade retyped a column (2.x's naive trigger_timeout, here made so in the warehouse): the older
    # versions keep their values under the mirror's kept name, and a fresh column takes the new type.
    connection = duckdb.connect(duckdb_destination.removeprefix("duckdb:///"))
    for table in ("task_instance", "task_instance__history"):
        connection.execute(f'ALTER TABLE "{SCHEMA}"."{table}" ALTER COLUMN trigger_timeout TYPE TIMESTAMP')
    connection.close()
    sync(airflow3_source, duckdb_destination, "query")
    columns = mirror_query(duckdb_destination, "SELECT column_name, data_type FROM information_schema.columns WHERE "
                                               "table_schema = %s AND table_name = 'task_instance__history' AND "
                                               "column_name LIKE 'trigger_timeout%%' ORDER BY 1", (SCHEMA,))
    assert columns == [("trigger_timeout", "TIMESTAMP WITH TIME ZONE"), ("trigger_timeout_airflow2", "TIMESTAMP")]

    other = "team_schema"  # a team's own table of that name, in a schema cdc_sync has not mirrored into yet
    connection = duckdb.connect(duckdb_destination.removeprefix("duckdb:///"))
    connection.execute(f'CREATE SCHEMA "{other}"')
    connection.execute(f'CREATE TABLE "{other}"."task_instance__history" (note TEXT)')
    connection.execute(f"INSERT INTO \"{other}\".\"task_instance__history\" VALUES ('ours')")
    connection.close()
    with pytest.raises(TableSyncError, match="task_instance__history already exists") as refused:
        cdc_sync.sync(airflow3_source, duckdb_destination, other, tables=TABLES, capture="query", history=True)
    assert list(refused.value.failed_tables) == ["task_instance"]  # dag_run, with no such table, is synced
    assert mirror_query(duckdb_destination, f'SELECT * FROM "{other}"."task_instance__history"') == [("ours",)]
    tables = mirror_query(duckdb_destination, "SELECT table_name FROM information_schema.tables "
                                              "WHERE table_schema = %s AND table_name LIKE 'task%%'", (other,))
    assert tables == [("task_instance__history",)]  # no mirror of task_instance was left behind either


def query_mode_scenario(source: str, destination: str, schema: str, read_versions) -> None:
    """Query mode on any warehouse: ``read_versions(key)`` gives the key's (state, op, valid_from, valid_to) in
    order. Two writes between two cycles are one version, the later; a delete is a version of its own."""
    def cycle() -> None:
        report = cdc_sync.sync(source, destination, schema, tables=TABLES, capture="query", history=True)
        assert report.ok, report.failed

    cycle()
    key = a_task_instance(source)
    write(source, key, "queued")
    cycle()
    write(source, key, "running")
    write(source, key, "success")
    cycle()
    write(source, key, None)
    cycle()
    rows = read_versions(key)
    assert [row[:2] for row in rows[1:]] == [("queued", "update"), ("success", "update"), ("success", "delete")]
    assert rows[0][1] == "insert"
    for (_, _, _, valid_to), (_, _, next_from, _) in itertools.pairwise(rows):
        assert valid_to == next_from
    assert rows[-1][2] == rows[-1][3]  # the delete is an instant, and nothing is left open
