"""The benchmark's fan-out DAG: one mapped task per table (CDC_BENCH_TABLES, comma-separated), all into one
PostgreSQL schema behind the connection "main", from the source behind the connection "airflow_db"."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import dag, task

from cdc_sync.airflow.decorator import tables_to_fan_out

TABLES = os.environ.get("CDC_BENCH_TABLES", "dag,dag_run").split(",")


@dag(dag_id="fanout_bench", schedule=None, start_date=datetime(2024, 1, 1), catchup=False, max_active_tasks=16)
def fanout_bench():
    @task.datacoves_airflow_db_sync(db_type="postgres", destination_schema="airflow", connection_id="main",
                                    tables=TABLES, lock_wait_seconds=3600, retries=0)
    def sync_table(table: str):
        return {"tables": [table]}

    sync_table.expand(table=tables_to_fan_out(tables=TABLES))


fanout_bench()
