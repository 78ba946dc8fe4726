"""Locks per table: cycles of disjoint tables run together, two cycles never write one table at the same time,
a table held by another cycle is waited for (lock_wait_seconds) or left to it, and DuckDB waits its turn."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

import psycopg
import pytest

import cdc_sync
from cdc_sync import cycle_locks
from cdc_sync.destinations import open_destination
from cdc_sync.errors import CycleAlreadyRunningError
from cdc_sync.urls import parse_url
from tests.mirror_check import AIRFLOW_KEYS, assert_mirrored, mirror_query

SCHEMA = "airflow"


def _holding(destination: str, table: str):
    """Another cycle's hold on ``table``: its lock taken on a connection of its own."""
    holder = open_destination(parse_url(destination, role="destination"))
    assert holder.try_lock(SCHEMA, table)
    return holder


@pytest.mark.parametrize("destination_fixture", ["duckdb_destination", "postgres_destination"])
def test_a_table_held_by_another_cycle_is_left_to_it_or_waited_for(airflow3_source: str, destination_fixture: str,
                                                                   request: pytest.FixtureRequest) -> None:
    destination = request.getfixturevalue(destination_fixture)
    holder = _holding(destination, "dag_run")
    try:
        with pytest.raises(CycleAlreadyRunningError, match="Another cycle is syncing dag_run"):
            cdc_sync.sync(airflow3_source, destination, SCHEMA, tables=["dag_run"])
        # The other tables are synced; the held one is left to its cycle, recorded, and not a failure.
        report = cdc_sync.sync(airflow3_source, destination, SCHEMA, tables=["dag", "dag_run"])
        assert report.ok
        assert {t.table: t.status for t in report.tables} == {"dag": "ok", "dag_run": "locked"}
        runs = mirror_query(destination, f'SELECT table_name, status FROM "{SCHEMA}"."_cdc_runs"')
        assert sorted(runs) == [("dag", "ok"), ("dag_run", "locked"), ("dag_run", "locked")]  # both cycles' records
        marks = mirror_query(destination, f'SELECT table_name FROM "{SCHEMA}"."_cdc_watermarks"')
        assert marks == [("dag",)]
        # With lock_wait_seconds the cycle waits for that table only, and syncs it once it is free.
        threading.Timer(1.5, holder.unlock, args=(SCHEMA, "dag_run")).start()
        started = time.monotonic()
        announced: list[str] = []
        report = cdc_sync.sync(airflow3_source, destination, SCHEMA, tables=["dag", "dag_run"],
                               lock_wait_seconds=60, on_table=lambda table: announced.append(table.table))
        assert {t.table: t.status for t in report.tables} == {"dag": "ok", "dag_run": "ok"}
        assert time.monotonic() - started >= 1.0
        assert announced == ["dag", "dag_run"]  # the table synced after its wait is announced too
    finally:
        holder.close()
    assert_mirrored(airflow3_source, destination, SCHEMA, "dag_run", AIRFLOW_KEYS["dag_run"])
    assert cdc_sync.sync(airflow3_source, destination, SCHEMA).ok  # every lock was released


def test_the_schema_lock_does_not_cover_tables_and_lasts_only_the_setup(airflow3_source: str,
                                                                        postgres_destination: str) -> None:
    """A cycle holds the schema lock only around migrations and the source claim, so a table lock held elsewhere
    does not stop it from starting, and the schema lock is free again while its tables are synced."""
    seen_free: list[bool] = []
    probe = open_destination(parse_url(postgres_destination, role="destination"))

    def during_table(_report) -> None:
        free = probe.try_lock(SCHEMA)
        seen_free.append(free)
        if free:
            probe.unlock(SCHEMA)

    try:
        cdc_sync.sync(airflow3_source, postgres_destination, SCHEMA, tables=["dag", "dag_run"], on_table=during_table)
    finally:
        probe.close()
    assert seen_free == [True, True]


def test_duckdb_waits_for_the_process_writing_its_file(airflow3_source: str, duckdb_destination: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    path = duckdb_destination.removeprefix("duckdb:///")
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb,time; c=duckdb.connect({path!r}); "
                               "print('ready', flush=True); time.sleep(2)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with caplog.at_level(logging.INFO, logger="cdc_sync"):
            report = cdc_sync.sync(airflow3_source, duckdb_destination, SCHEMA, tables=["dag"],
                                   lock_wait_seconds=60)
    finally:
        holder.kill()
        holder.wait()
    assert report.ok
    assert "DuckDB has one writer per file" in caplog.text and "parallel_tables" in caplog.text


def _old_style_lock(destination: str) -> psycopg.Connection:
    """A connection holding the lock a cdc_sync from before per-table locks took for its whole cycle (commit
    084d982: ``pg_try_advisory_lock(hashtext('cdc_sync:<schema>'))``, exclusive, one key)."""
    return psycopg.connect(destination, autocommit=True)


def _old_cycle_may_start(connection: psycopg.Connection) -> bool:
    taken = connection.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (f"cdc_sync:{SCHEMA}",)).fetchone()[0]
    if taken:
        connection.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"cdc_sync:{SCHEMA}",))
    return taken


def test_an_older_cdc_sync_and_this_one_never_sync_one_schema_together(airflow3_source: str,
                                                                       postgres_destination: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Rolling upgrades on PostgreSQL: an older cdc_sync held the schema's lock exclusively for its whole cycle;
    this one holds that lock in shared mode for its whole cycle, so cycles of this version run together while an
    older one waits, and the other way round."""
    monkeypatch.setattr(cycle_locks, "SCHEMA_WAIT_SECONDS", 0.5)
    old = _old_style_lock(postgres_destination)
    try:
        # While cycles of this version run (two at once, each inside its first table), an older one cannot start.
        inside = threading.Barrier(2, timeout=60)
        seen: dict[str, bool] = {}

        def during(table: str):
            def on_table(report) -> None:
                inside.wait()
                seen[table] = _old_cycle_may_start(old)
                inside.wait()
            return on_table

        threads = [threading.Thread(target=cdc_sync.sync, args=(airflow3_source, postgres_destination, SCHEMA),
                                    kwargs={"tables": [table], "on_table": during(table), "lock_wait_seconds": 30})
                   for table in ("dag", "dag_run")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert seen == {"dag": False, "dag_run": False}
        assert _old_cycle_may_start(old)  # both cycles ended, and released it

        # While an older cycle runs, a cycle of this version waits for it, then stops before writing anything.
        old.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"cdc_sync:{SCHEMA}",))
        with pytest.raises(CycleAlreadyRunningError, match="older than per-table locks"):
            cdc_sync.sync(airflow3_source, postgres_destination, SCHEMA, tables=["log"])
        assert mirror_query(postgres_destination, f"SELECT count(*) FROM \"{SCHEMA}\".\"_cdc_watermarks\" "
                                                  "WHERE table_name = 'log'") == [(0,)]
        with pytest.raises(CycleAlreadyRunningError, match="older than per-table locks"):  # a repair neither
            cdc_sync.verify(airflow3_source, postgres_destination, SCHEMA, tables=["dag"], fix=True)
    finally:
        old.close()
    assert cdc_sync.sync(airflow3_source, postgres_destination, SCHEMA, tables=["log"]).ok
