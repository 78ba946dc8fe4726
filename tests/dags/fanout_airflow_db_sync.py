"""The fan-out: one mapped task per table, all syncing one PostgreSQL schema (the connection "main", set by the
test or the benchmark through AIRFLOW_CONN_MAIN) from the source behind the connection "airflow_db". The tables
are CDC_FANOUT_TABLES (comma-separated) when set (bench/fanout.py), else the test's six."""

from __future__ import annotations

import os
from datetime import datetime

from cdc_sync.airflow.decorator import tables_to_fan_out

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2
    from airflow.decorators import dag, task

FANOUT_TABLES = os.environ.get("CDC_FANOUT_TABLES", "dag,dag_run,dag_tag,job,log,task_instance").split(",")


@dag(dag_id="fanout_airflow_db_sync", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
     tags=["cdc_sync"])
def fanout_airflow_db_sync():
    @task.datacoves_airflow_db_sync(db_type="postgres", destination_schema="airflow_fanout", connection_id="main",
                                    tables=FANOUT_TABLES, lock_wait_seconds=600, retries=0)
    def sync_table(table: str):
        return {"tables": [table]}

    sync_table.expand(table=tables_to_fan_out(tables=FANOUT_TABLES))


fanout_airflow_db_sync()
