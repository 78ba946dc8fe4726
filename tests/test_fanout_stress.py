"""Many cycles at once on one PostgreSQL schema: 8 processes, random overlapping table sets, 50 cycles in all,
while the source keeps changing. No deadlock, no failed table, no lost state row, no two cycles inside one table
at once, cycles of different tables overlapping, and an exact mirror at the end."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from threading import Event, Thread

import psycopg
import pytest

import cdc_sync
from tests.mirror_check import AIRFLOW_KEYS, assert_mirrored, mirror_query

SCHEMA = "airflow"
TABLES = sorted(AIRFLOW_KEYS)
PROCESSES = 8
CYCLES = 50


def run_cycles(source: str, destination: str, table_sets: list[list[str]], seed: int) -> list[dict[str, str]]:
    """One process's cycles, in order: each cycle's table statuses (a failed table raises)."""
    chosen = random.Random(seed)
    statuses = []
    for tables in table_sets:
        report = cdc_sync.sync(source, destination, SCHEMA, tables=tables, lock_wait_seconds=120,
                               parallel_tables=chosen.choice([1, 2]))
        statuses.append({table.table: table.status for table in report.tables})
    return statuses


def keep_writing(source: str, stop: Event) -> None:
    """Scheduler-like writes while the cycles run: new log rows, dag runs changing state."""
    with psycopg.connect(source, autocommit=True) as connection:
        while not stop.wait(0.05):
            connection.execute("INSERT INTO log (dttm, event, dag_id) VALUES (now(), 'stress', 'dag_1')")
            connection.execute("UPDATE dag_run SET state = CASE state WHEN 'running' THEN 'success' ELSE 'running' "
                               "END, updated_at = now() WHERE id = (SELECT id FROM dag_run ORDER BY random() LIMIT 1)")


@pytest.mark.slow
def test_fifty_cycles_in_eight_processes(airflow3_source: str, postgres_destination: str) -> None:
    chosen = random.Random(14)
    plans = [[sorted(chosen.sample(TABLES, chosen.randint(1, 4))) for _ in range(CYCLES // PROCESSES + 1)]
             for _ in range(PROCESSES)]
    while sum(map(len, plans)) > CYCLES:
        max(plans, key=len).pop()
    stop = Event()
    writer = Thread(target=keep_writing, args=(airflow3_source, stop))
    writer.start()
    try:
        with ProcessPoolExecutor(PROCESSES, mp_context=get_context("spawn")) as pool:
            outcomes = [pool.submit(run_cycles, airflow3_source, postgres_destination, table_sets, number)
                        for number, table_sets in enumerate(plans)]
            results = [outcome.result(timeout=600) for outcome in outcomes]
    finally:
        stop.set()
        writer.join()
    cycles = [statuses for result in results for statuses in result]
    assert len(cycles) == CYCLES
    assert all(status in ("ok", "locked") for statuses in cycles for status in statuses.values())

    runs = mirror_query(postgres_destination, f'SELECT cycle_id, table_name, status, started_at, finished_at '
                                              f'FROM "{SCHEMA}"."_cdc_runs"')
    # No lost state row: one run record per table of every cycle, and each table's watermark is its last run's.
    assert len(runs) == sum(len(statuses) for statuses in cycles)
    assert {status for *_, status, _, _ in runs} <= {"ok", "locked"}
    ok_runs = defaultdict(list)
    for _, table, status, started, finished in runs:
        if status == "ok":
            ok_runs[table].append((started, finished))
    marks = dict(mirror_query(postgres_destination, f'SELECT table_name, last_success_at '
                                                    f'FROM "{SCHEMA}"."_cdc_watermarks"'))
    assert set(marks) == set(ok_runs)
    for table, windows in ok_runs.items():
        assert marks[table] == max(finished for _, finished in windows)
        # Two cycles never inside one table at once.
        windows.sort()
        for (_, finished), (started, _) in itertools.pairwise(windows):
            assert finished <= started, f"two cycles overlapped on {table}"
    # Cycles of different tables did run at the same time.
    everything = sorted((started, finished, table) for table, windows in ok_runs.items()
                        for started, finished in windows)
    assert any(later_start < finished and table != other
               for (_, finished, table), (later_start, _, other) in itertools.pairwise(everything))

    assert cdc_sync.sync(airflow3_source, postgres_destination, SCHEMA, tables=TABLES).ok
    for table in TABLES:
        assert_mirrored(airflow3_source, postgres_destination, SCHEMA, table, AIRFLOW_KEYS[table])
