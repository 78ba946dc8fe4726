"""Real Airflow schemas for tests: ``airflow db migrate`` once per engine into a template, copies per test.

Also fills an Airflow 3 PostgreSQL schema with scheduler-like rows, generated in SQL so that a million rows take
seconds (shared with the benchmark).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_URL = "postgresql://postgres@127.0.0.1:5432/{database}"


def airflow_migrate(sql_alchemy_conn: str, airflow_bin: str | None = None) -> None:
    """Create Airflow's own schema with Airflow's own migrations (no hand-written DDL)."""
    airflow_bin = airflow_bin or str(Path(sys.executable).with_name("airflow"))
    home = tempfile.mkdtemp(prefix="airflow-home-")
    env = {
        **os.environ,
        "AIRFLOW_HOME": home,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }
    try:
        result = subprocess.run([airflow_bin, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def pg_execute(sql: str, dbname: str = "postgres") -> None:
    with psycopg.connect(PG_ADMIN.replace("dbname=postgres", f"dbname={dbname}"), autocommit=True) as connection:
        connection.execute(sql)


def pg_database_exists(name: str) -> bool:
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        return connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def pg_recreate_database(name: str, template: str | None = None) -> str:
    """Drop and create a database (optionally as a copy of ``template``); returns its URL."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        suffix = f' TEMPLATE "{template}"' if template else ""
        connection.execute(f'CREATE DATABASE "{name}"{suffix}')
    return PG_URL.format(database=name)


def pg_airflow3_template(name: str = "cdc_tpl_airflow3") -> str:
    """A PostgreSQL database holding an empty Airflow 3 schema, migrated once and reused as a template."""
    if not pg_database_exists(name):
        pg_recreate_database(name + "_building")
        airflow_migrate(PG_URL.format(database=name + "_building").replace("postgresql://", "postgresql+psycopg://"))
        with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
            connection.execute(f'ALTER DATABASE "{name}_building" RENAME TO "{name}"')
    return name


FILL_AIRFLOW3_SQL = """
INSERT INTO dag_bundle (name) VALUES ('dags-folder') ON CONFLICT DO NOTHING;
INSERT INTO dag (dag_id, is_paused, is_stale, bundle_name, timetable_type, partition_mapper_info,
                 max_active_tasks, max_consecutive_failed_dag_runs, has_task_concurrency_limits, fileloc, owners,
                 description, last_parsed_time)
SELECT 'dag_' || d, mod(d, 7) = 0, false, 'dags-folder', 'cron', '{}'::json, 16, 0, false,
       '/opt/airflow/dags/dag_' || d || '.py', 'data-team', 'Ünïcode dag № ' || d, now() - interval '1 day'
FROM generate_series(1, %(dags)s) AS d;
INSERT INTO dag_tag (name, dag_id) SELECT t, 'dag_' || d FROM generate_series(1, %(dags)s) AS d,
       unnest(ARRAY['finance', 'daily']) AS t;
INSERT INTO dag_run (dag_id, run_id, logical_date, run_after, start_date, end_date, state, run_type, conf,
                     data_interval_start, data_interval_end, queued_at, created_at, updated_at, clear_number)
SELECT 'dag_' || (mod(r, %(dags)s) + 1), 'scheduled__' || r, timestamp '2026-01-01' + r * interval '1 minute',
       timestamp '2026-01-01' + r * interval '1 minute', timestamp '2026-01-01' + r * interval '1 minute',
       timestamp '2026-01-01' + r * interval '1 minute' + interval '5 min', 'success', 'scheduled',
       jsonb_build_object('run', r, 'note', 'ok'),
       timestamp '2026-01-01' + r * interval '1 minute', timestamp '2026-01-01' + r * interval '1 minute',
       timestamp '2026-01-01' + r * interval '1 minute', timestamp '2026-01-01' + r * interval '1 minute',
       now() - interval '2 days' + r * interval '1 second', 0
FROM generate_series(1, %(runs)s) AS r;
INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, start_date, end_date, duration, state,
                           try_number, max_tries, hostname, unixname, pool, pool_slots, queue, priority_weight,
                           operator, executor_config, updated_at, next_kwargs, span_status)
SELECT gen_random_uuid(), 'task_' || t, dr.dag_id, dr.run_id, -1, dr.start_date,
       dr.start_date + t * interval '1.234567 second', t * 1.234567, 'success', 1, 0, 'worker-1', 'airflow',
       'default_pool', 1, 'default', 1, 'PythonOperator', '\\x80059503000000000000007d942e'::bytea,
       now() - interval '2 days' + dr.id * interval '1 second' + t * interval '1 millisecond', NULL, 'not_started'
FROM dag_run dr, generate_series(1, %(tasks_per_run)s) AS t;
INSERT INTO job (dag_id, state, job_type, start_date, end_date, latest_heartbeat, executor_class, hostname, unixname)
SELECT 'dag_' || (mod(j, %(dags)s) + 1), 'success', 'LocalTaskJob',
       now() - interval '2 hour', now() - interval '1 hour',
       now() - interval '1 hour', 'LocalExecutor', 'worker-1', 'airflow'
FROM generate_series(1, %(jobs)s) AS j;
INSERT INTO import_error (timestamp, filename, bundle_name, stacktrace)
VALUES (now() - interval '1 hour', '/opt/airflow/dags/broken.py', 'dags-folder',
        E'Traceback (most recent call last):\\n  File "broken.py", line 1\\nSyntaxError: invalid syntax');
INSERT INTO log (dttm, dag_id, task_id, event, owner, extra)
SELECT now() - interval '1 hour', 'dag_' || (mod(l, %(dags)s) + 1), 'task_1', 'running', 'airflow', '{"k": "v"}'
FROM generate_series(1, %(logs)s) AS l;
"""


def fill_airflow3(url: str, *, dags: int = 5, runs: int = 50, tasks_per_run: int = 4, jobs: int = 20,
                  logs: int = 30) -> None:
    """Scheduler-like content: DAGs, tags, runs, task instances, jobs, an import error, log rows."""
    params = {"dags": dags, "runs": runs, "tasks_per_run": tasks_per_run, "jobs": jobs, "logs": logs}
    with psycopg.connect(url, autocommit=True) as connection, connection.cursor() as cursor:
        for statement in FILL_AIRFLOW3_SQL.split(";\n"):
            if statement.strip():
                cursor.execute(statement, params)
