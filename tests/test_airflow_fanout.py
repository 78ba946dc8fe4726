"""The mapped DAG on real Airflow 3 (LocalExecutor, parallelism 4, task isolation): six tables, six mapped tasks,
one PostgreSQL schema. The cycles of different tables overlap, as `_cdc_runs` shows, and the mirror is exact.

On a fast machine each table's cycle ends before the next task has started, so the test holds every table's lock
on the source until at least two tasks wait on it at the same moment (or a minute has passed): only tasks that
really run side by side get there. (This is how a first run with ``capture=auto`` was found to make the tasks take
turns: each waited for the replication slot's lock held by the first through its whole copy.)"""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from tests.airflow_schema import PG_URL, fill_airflow3, pg_execute, pg_recreate_database
from tests.dags.fanout_airflow_db_sync import FANOUT_TABLES
from tests.mirror_check import AIRFLOW_KEYS, assert_mirrored
from tests.test_airflow_decorator import _all_logs, _run_env, run_under_task_isolation

DAG_ID = "fanout_airflow_db_sync"
SCHEMA = "airflow_fanout"


@pytest.fixture
def fanout_databases(postgres_available):
    suffix = uuid.uuid4().hex[:10]
    names = {"metadata": f"cdc_fo_meta_{suffix}", "warehouse": f"cdc_fo_dst_{suffix}", "source": f"cdc_fo_src_{suffix}"}
    yield names
    for name in names.values():
        pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _hold_tables_until_two_wait(source: str, seen: list[int], seconds: float = 60) -> None:
    """Lock the fanned-out tables until two sessions wait for them together (or ``seconds`` have passed), then let
    every cycle go on; ``seen`` gets the most sessions seen waiting at once."""
    with psycopg.connect(source) as holder, psycopg.connect(source, autocommit=True) as watcher:
        tables = ", ".join(f'"{table}"' for table in FANOUT_TABLES)
        holder.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
        deadline = time.monotonic() + seconds
        waiting = 0
        while time.monotonic() < deadline and waiting < 2:
            time.sleep(0.05)
            waiting = watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                      "AND wait_event_type = 'Lock'").fetchone()[0]
            seen.append(waiting)
        holder.commit()


@pytest.mark.slow
def test_mapped_tasks_of_one_schema_run_at_the_same_time(fanout_databases, airflow3_template, tmp_path):
    names = fanout_databases
    pg_recreate_database(names["metadata"], template=airflow3_template)
    pg_recreate_database(names["warehouse"])
    # A source of its own that nothing writes during the run, big enough that each table's sync takes a while.
    source = pg_recreate_database(names["source"], template=airflow3_template)
    fill_airflow3(source, runs=4000, tasks_per_run=10, logs=40000)
    waiting: list[int] = []
    holder = threading.Thread(target=_hold_tables_until_two_wait, args=(source, waiting), daemon=True)
    holder.start()
    returncode, output = run_under_task_isolation(_run_env(tmp_path, names, "psycopg"), tmp_path, DAG_ID, {
        "AIRFLOW_CONN_AIRFLOW_DB": source,
        "AIRFLOW__CORE__PARALLELISM": "4",
    })
    holder.join(timeout=5)
    assert max(waiting, default=0) >= 2, "no two mapped tasks reached their tables' reads at the same time"
    assert returncode in (0, None), output[-4000:]
    logs = _all_logs(tmp_path, output)
    assert logs.count("final_state=success") == len(FANOUT_TABLES), output[-4000:]

    with psycopg.connect(PG_URL.format(database=names["warehouse"])) as warehouse:
        runs = warehouse.execute(f'SELECT table_name, status, started_at, finished_at FROM "{SCHEMA}"."_cdc_runs" '
                                 "ORDER BY started_at").fetchall()
    assert sorted(table for table, *_ in runs) == sorted(FANOUT_TABLES)
    assert {status for _, status, _, _ in runs} == {"ok"}
    overlapping = {(first[0], second[0]) for index, first in enumerate(runs) for second in runs[index + 1:]
                   if second[2] < first[3]}
    assert overlapping, f"no two tables' cycles overlapped: {runs}"
    for table in FANOUT_TABLES:
        assert_mirrored(source, PG_URL.format(database=names["warehouse"]), SCHEMA, table, AIRFLOW_KEYS[table])
    with psycopg.connect(PG_URL.format(database=names["metadata"])) as metadata:
        published = {row[0] for row in metadata.execute(
            "SELECT a.uri FROM asset_event e JOIN asset a ON a.id = e.asset_id")}
    assert published == {f"cdc-sync://{SCHEMA}/{table}" for table in FANOUT_TABLES}
