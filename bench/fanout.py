"""The fan-out benchmark: the mapped DAG (one task per table) on real Airflow 3 with the LocalExecutor, into a
PostgreSQL schema, with 1 worker and with 4 (``parallelism``); wall time of each DAG run.

Two DAG runs per setting, each in a fresh metadata database: the first load of an empty schema, then a cycle
with no change. The scale's source is built by ``bench/dataset.py`` (reused if present) and only read here.

    .venv/bin/python bench/fanout.py --scale 1 --workers 1 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import dataset as bench_dataset  # noqa: E402  (bench/ is put on the path above)
from run import TABLES, source_ready  # noqa: E402

from tests.airflow_run import run_under_task_isolation  # noqa: E402
from tests.airflow_schema import PG_URL, pg_airflow3_template, pg_execute, pg_recreate_database  # noqa: E402

DAG_ID = "fanout_airflow_db_sync"
DAGS = BENCH.parent / "tests" / "dags"


def dag_run(home: Path, source: str, warehouse: str, workers: int) -> dict:
    """One DAG run in a fresh metadata database; its wall time as Airflow recorded it, and the command's."""
    metadata_name = f"cdc_bench_fo_meta_{uuid.uuid4().hex[:8]}"
    metadata = pg_recreate_database(metadata_name, template=pg_airflow3_template())
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "CDC_SYNC"))},
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata.replace("postgresql://", "postgresql+psycopg://"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_MAIN": warehouse,
        "CDC_FANOUT_TABLES": ",".join(TABLES),
    }
    try:
        started = time.perf_counter()
        returncode, output = run_under_task_isolation(env, home, DAG_ID, {
            "AIRFLOW_CONN_AIRFLOW_DB": source,
            "AIRFLOW__CORE__PARALLELISM": str(workers),
        }, timeout=3600)
        command_seconds = time.perf_counter() - started
        with psycopg.connect(metadata) as connection:
            state, seconds = connection.execute(
                "SELECT state, extract(epoch FROM end_date - start_date) FROM dag_run WHERE dag_id = %s",
                (DAG_ID,)).fetchone()
            tasks = connection.execute(
                "SELECT count(*), max(extract(epoch FROM end_date - start_date)) FROM task_instance "
                "WHERE dag_id = %s AND state = 'success'", (DAG_ID,)).fetchone()
    finally:
        pg_execute(f'DROP DATABASE IF EXISTS "{metadata_name}" WITH (FORCE)')
    if state != "success":
        raise RuntimeError(f"the DAG run ended {state} (exit code {returncode}): {output[-3000:]}")
    return {"dag_run_seconds": round(float(seconds), 1), "command_seconds": round(command_seconds, 1),
            "tasks_ok": tasks[0], "longest_task_seconds": round(float(tasks[1]), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    arguments = parser.parse_args()
    data = bench_dataset.Dataset(arguments.scale)
    source = PG_URL.format(database=data.database)
    if not source_ready(source, data):
        source, seconds = bench_dataset.build(data)
        print(f"built the scale-{arguments.scale} source in {seconds:.0f} s", file=sys.stderr)
    results = {}
    for workers in arguments.workers:
        warehouse_name = f"cdc_bench_fo_dst_{uuid.uuid4().hex[:8]}"
        warehouse = pg_recreate_database(warehouse_name)
        try:
            with tempfile.TemporaryDirectory(prefix="cdc_bench_fanout_") as home:
                first = dag_run(Path(home), source, warehouse, workers)
            with tempfile.TemporaryDirectory(prefix="cdc_bench_fanout_") as home:
                unchanged = dag_run(Path(home), source, warehouse, workers)
        finally:
            pg_execute(f'DROP DATABASE IF EXISTS "{warehouse_name}" WITH (FORCE)')
        results[workers] = {"first_load": first, "no_change": unchanged}
        print(json.dumps({"workers": workers, **results[workers]}), flush=True)
    print("\n| workers | first load: DAG run (longest task) | no change: DAG run (longest task) |")
    print("|---|---|---|")
    for workers, result in results.items():
        first, unchanged = result["first_load"], result["no_change"]
        print(f"| {workers} | {first['dag_run_seconds']} s ({first['longest_task_seconds']} s) | "
              f"{unchanged['dag_run_seconds']} s ({unchanged['longest_task_seconds']} s) |")


if __name__ == "__main__":
    main()
