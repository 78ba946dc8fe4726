"""The seed's example DAG, unchanged but for its destination: the connection "main" points at a local
PostgreSQL database (set by the test through AIRFLOW_CONN_MAIN), so db_type is "postgres" instead of "snowflake".
The source is the connection "airflow_db" (AIRFLOW_CONN_AIRFLOW_DB), the metadata database of this very Airflow."""

from __future__ import annotations

from datetime import datetime

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2
    from airflow.decorators import dag, task


@dag(dag_id="seed_airflow_db_sync", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
     tags=["cdc_sync"])
def seed_airflow_db_sync():
    @task.datacoves_airflow_db_sync(db_type="postgres", destination_schema="airflow_dev", connection_id="main",
                                    # additional_tables=["additional_table_1", "additional_table_2"],
                                    retries=0)
    def sync_airflow_db():
        pass

    sync_airflow_db()


seed_airflow_db_sync()
