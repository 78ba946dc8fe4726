"""Real Airflow schemas for tests: ``airflow db migrate`` once per engine into a template, copies per test.

Also fills an Airflow 3 PostgreSQL schema with scheduler-like rows, generated in SQL so that a million rows take
seconds (shared with the benchmark).
"""

from __future__ import annotations

import datetime as dt
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


# Task instances are written run by run, as the scheduler creates them, with time-ordered ids as Airflow 3's
# uuid7 (48 bits of milliseconds, then random bits): a table's physical order and its ids follow time.
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
SELECT (lpad(to_hex((extract(epoch FROM dr.start_date) * 1000)::bigint), 12, '0') || '7' || substr(h.digest, 1, 3)
        || '8' || substr(h.digest, 4, 15))::uuid, 'task_' || t, dr.dag_id, dr.run_id, -1, dr.start_date,
       dr.start_date + t * interval '1.234567 second', t * 1.234567, 'success', 1, 0, 'worker-1', 'airflow',
       'default_pool', 1, 'default', 1, 'PythonOperator', '\\x80059503000000000000007d942e'::bytea,
       now() - interval '2 days' + dr.id * interval '1 second' + t * interval '1 millisecond', NULL, 'not_started'
FROM dag_run dr, generate_series(1, %(tasks_per_run)s) AS t, LATERAL (SELECT md5(dr.id || '-' || t) AS digest) AS h
ORDER BY dr.id, t;
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


# ---------------------------------------------------------------------------------------------------------------
# MySQL / MariaDB and SQLite

MYSQL_ADMIN = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/{database}"


def mysql_connect(database: str | None = None, **options):
    """A pymysql connection as Airflow's would be: autocommit off, instants rendered in UTC."""
    import pymysql

    return pymysql.connect(**MYSQL_ADMIN, database=database, charset="utf8mb4",
                           init_command="SET time_zone = '+00:00'", **options)


def mysql_execute(sql: str, params: tuple | None = None, database: str | None = None) -> None:
    with mysql_connect(database, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(sql, params)


def mysql_database_has_table(database: str, table: str) -> bool:
    with mysql_connect(autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                       (database, table))
        return cursor.fetchone() is not None


def _mysqldb_shim() -> str:
    """Airflow insists on importing ``MySQLdb`` (mysqlclient, which needs C headers) even when the URL names
    pymysql; this directory satisfies that import with pymysql. Only the migration subprocess sees it."""
    root = Path(tempfile.gettempdir()) / "cdc_sync_mysqldb_shim"
    package = root / "MySQLdb"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("from pymysql import *  # noqa: F403\n")
    (package / "converters.py").write_text(
        "from pymysql.converters import conversions, escape_datetime as DateTime2literal  # noqa: F401\n"
    )
    return str(root)


def airflow_migrate_mysql(url: str) -> None:
    """``airflow db migrate`` on MySQL/MariaDB through pymysql (aiomysql serves Airflow's async engine)."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_mysqldb_shim(), previous]))
    try:
        airflow_migrate(url)
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous


def mysql_airflow3_template(name: str = "cdc_tpl_airflow3") -> str:
    """A MariaDB database holding an empty Airflow 3 schema, migrated once and reused as a template."""
    if not mysql_database_has_table(name, "alembic_version"):
        mysql_execute(f"DROP DATABASE IF EXISTS `{name}`")
        mysql_execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        try:
            airflow_migrate_mysql(MYSQL_URL.format(database=name))
        except BaseException:
            mysql_execute(f"DROP DATABASE IF EXISTS `{name}`")
            raise
    return name


def mysql_copy_database(template: str, name: str) -> str:
    """Create ``name`` as a copy of ``template`` (tables with their keys, constraints and rows); returns its URL.

    ``CREATE TABLE … LIKE`` would drop the foreign keys that cascade deletes, so each table is recreated from
    ``SHOW CREATE TABLE``."""
    with mysql_connect(autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        cursor.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                       "AND TABLE_TYPE = 'BASE TABLE'", (template,))
        tables = [row[0] for row in cursor.fetchall()]
        cursor.execute(f"USE `{name}`")
        cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
        for table in tables:
            cursor.execute(f"SHOW CREATE TABLE `{template}`.`{table}`")
            cursor.execute(cursor.fetchone()[1])
            cursor.execute(f"INSERT INTO `{table}` SELECT * FROM `{template}`.`{table}`")
        cursor.execute("SET FOREIGN_KEY_CHECKS = 1")
    return MYSQL_URL.format(database=name)


def sqlite_airflow3_template(directory: Path) -> Path:
    """An SQLite file holding an empty Airflow 3 schema, migrated once per test session."""
    path = directory / "airflow3_template.db"
    if not path.exists():
        building = directory / "airflow3_building.db"
        airflow_migrate(f"sqlite:///{building}")
        building.rename(path)
    return path


def _tag_and_job_rows(dags: int, jobs: int, now: dt.datetime) -> dict[str, tuple[tuple[str, ...], list[tuple]]]:
    """``dag_tag`` and ``job`` rows, alike in the Airflow 2 and 3 schemas."""
    return {
        "dag_tag": (("name", "dag_id"),
                    [(tag, f"dag_{d}") for d in range(1, dags + 1) for tag in ("finance", "daily")]),
        "job": (
            ("dag_id", "state", "job_type", "start_date", "end_date", "latest_heartbeat", "executor_class",
             "hostname", "unixname"),
            [(f"dag_{j % dags + 1}", "success", "LocalTaskJob", now - dt.timedelta(hours=2),
              now - dt.timedelta(hours=1), now - dt.timedelta(hours=1), "LocalExecutor", "worker-1", "airflow")
             for j in range(1, jobs + 1)],
        ),
    }


def airflow3_rows(*, dags: int = 5, runs: int = 50, tasks_per_run: int = 4, jobs: int = 20, logs: int = 30,
                  first_run: int = 1) -> dict[str, tuple[tuple[str, ...], list[tuple]]]:
    """Scheduler-like content as Python values (naive UTC datetimes, JSON text, bytes), table by table, for the
    engines where rows are inserted from Python. ``first_run`` lets a test add runs later without collisions."""
    import json
    import uuid as uuid_module

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    base = dt.datetime(2026, 1, 1)
    tables: dict[str, tuple[tuple[str, ...], list[tuple]]] = {}
    if first_run == 1:
        tables["dag_bundle"] = (("name",), [("dags-folder",)])
        tables["dag"] = (
            ("dag_id", "is_paused", "is_stale", "exceeds_max_non_backfill", "bundle_name", "timetable_type",
             "timetable_partitioned", "timetable_periodic", "partition_mapper_info", "max_active_tasks",
             "max_consecutive_failed_dag_runs", "has_task_concurrency_limits", "fail_fast", "fileloc", "owners",
             "description", "last_parsed_time"),
            [(f"dag_{d}", d % 7 == 0, False, False, "dags-folder", "cron", False, True, "{}", 16, 0, False, False,
              f"/opt/airflow/dags/dag_{d}.py", "data-team", f"Ünïcode dag № {d} ✓", now - dt.timedelta(days=1))
             for d in range(1, dags + 1)],
        )
        tables.update(_tag_and_job_rows(dags, jobs, now))
        tables["import_error"] = (
            ("timestamp", "filename", "bundle_name", "stacktrace"),
            [(now - dt.timedelta(hours=1), "/opt/airflow/dags/broken.py", "dags-folder",
              'Traceback (most recent call last):\n  File "broken.py", line 1\nSyntaxError: invalid "syntax", ok')],
        )
        tables["log"] = (
            ("dttm", "dag_id", "task_id", "event", "owner", "extra"),
            [(now - dt.timedelta(hours=1), f"dag_{n % dags + 1}", "task_1", "running", "airflow", '{"k": "v"}')
             for n in range(1, logs + 1)],
        )
    run_rows, ti_rows = [], []
    for r in range(first_run, first_run + runs):
        at = base + dt.timedelta(minutes=r)
        dag_id, run_id = f"dag_{r % dags + 1}", f"scheduled__{r}"
        updated = now - dt.timedelta(days=2) + dt.timedelta(seconds=r, microseconds=r * 7 % 1_000_000)
        conf = json.dumps({"run": r, "note": "ok ✓", "nested": {"a": [1, 2]}}, ensure_ascii=False)
        run_rows.append((dag_id, run_id, at, at, at, at + dt.timedelta(minutes=5), "success", "scheduled", conf,
                         at, at, at, at, updated, 0))
        for t in range(1, tasks_per_run + 1):
            ti_rows.append((
                str(uuid_module.uuid4()), f"task_{t}", dag_id, run_id, -1, at,
                at + dt.timedelta(seconds=t * 1.234567), t * 1.25, "success" if t % 5 else None, 1, 0,
                "worker-1", "airflow", "default_pool", 1, "default", t, "PythonOperator",
                bytes([0x80, 0x05, t % 256, 0x00, 0x7D, 0x94, 0x2E]) if t % 3 else None,
                updated + dt.timedelta(milliseconds=t), None if t % 2 else '{"x": "ü"}', "not_started",
            ))
    tables["dag_run"] = (
        ("dag_id", "run_id", "logical_date", "run_after", "start_date", "end_date", "state", "run_type", "conf",
         "data_interval_start", "data_interval_end", "queued_at", "created_at", "updated_at", "clear_number"),
        run_rows,
    )
    tables["task_instance"] = (
        ("id", "task_id", "dag_id", "run_id", "map_index", "start_date", "end_date", "duration", "state",
         "try_number", "max_tries", "hostname", "unixname", "pool", "pool_slots", "queue", "priority_weight",
         "operator", "executor_config", "updated_at", "next_kwargs", "span_status"),
        ti_rows,
    )
    return tables


def fill_airflow3_mysql(url: str, **sizes) -> None:
    """Insert :func:`airflow3_rows` into a MySQL/MariaDB Airflow 3 schema."""
    from cdc_sync.urls import make_url

    with mysql_connect(make_url(url).database) as connection, connection.cursor() as cursor:
        for table, (columns, rows) in airflow3_rows(**sizes).items():
            names = ", ".join(f"`{name}`" for name in columns)
            marks = ", ".join(["%s"] * len(columns))
            for start in range(0, len(rows), 5000):
                cursor.executemany(f"INSERT INTO `{table}` ({names}) VALUES ({marks})", rows[start:start + 5000])
        connection.commit()


def sqlite_text_time(value, offset_minutes: int = 0) -> str:
    """A UTC instant as Airflow's SQLite columns hold it: naive text, or with an explicit offset when asked."""

    if not offset_minutes:
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    zone = dt.timezone(dt.timedelta(minutes=offset_minutes))
    return value.replace(tzinfo=dt.UTC).astimezone(zone).isoformat(sep=" ")


def fill_airflow3_sqlite(path: str | Path, **sizes) -> None:
    """Insert :func:`airflow3_rows` into an SQLite Airflow 3 schema, timestamps as text; every third run's
    ``start_date`` carries a +02:00 offset, as rows written through other drivers sometimes do."""
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        for table, (columns, rows) in airflow3_rows(**sizes).items():
            def text(row: tuple, columns: tuple = columns, table: str = table) -> tuple:
                values = []
                for name, value in zip(columns, row, strict=True):
                    if isinstance(value, dt.datetime):
                        shifted = table == "dag_run" and name == "start_date" and int(row[1].split("__")[1]) % 3 == 0
                        value = sqlite_text_time(value, 120 if shifted else 0)
                    elif isinstance(value, str) and name == "id" and table == "task_instance":
                        value = value.replace("-", "")  # Airflow's UUIDs are CHAR(32) hex on SQLite
                    values.append(value)
                return tuple(values)

            names = ", ".join(f'"{name}"' for name in columns)
            marks = ", ".join(["?"] * len(columns))
            connection.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', [text(r) for r in rows])
        connection.commit()
    finally:
        connection.close()


# ---------------------------------------------------------------------------------------------------------------
# Airflow 2.11: schemas built by the 2.11 environment's own ``airflow db migrate`` (tests/airflow2_env.sh)

AIRFLOW2_VENV = Path(
    os.environ.get("CDC_SYNC_AIRFLOW2_VENV", Path(__file__).resolve().parent.parent / ".venv-airflow2")
)
AIRFLOW2_BIN = AIRFLOW2_VENV / "bin" / "airflow"


def pg_airflow2_template(name: str = "cdc_tpl_airflow2") -> str:
    """A PostgreSQL database holding an empty Airflow 2.11 schema (Airflow 2 reaches it through psycopg2)."""
    if not pg_database_exists(name):
        pg_recreate_database(name + "_building")
        airflow_migrate(PG_URL.format(database=name + "_building").replace("postgresql://", "postgresql+psycopg2://"),
                        airflow_bin=str(AIRFLOW2_BIN))
        with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
            connection.execute(f'ALTER DATABASE "{name}_building" RENAME TO "{name}"')
    return name


def mysql_airflow2_template(name: str = "cdc_tpl_airflow2") -> str:
    """A MariaDB database holding an empty Airflow 2.11 schema (pymysql behind the MySQLdb shim)."""
    if not mysql_database_has_table(name, "alembic_version"):
        mysql_execute(f"DROP DATABASE IF EXISTS `{name}`")
        mysql_execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        previous = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_mysqldb_shim(), previous]))
        try:
            airflow_migrate(MYSQL_URL.format(database=name), airflow_bin=str(AIRFLOW2_BIN))
        except BaseException:
            mysql_execute(f"DROP DATABASE IF EXISTS `{name}`")
            raise
        finally:
            if previous is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = previous
    return name


def sqlite_airflow2_template(directory: Path) -> Path:
    """An SQLite file holding an empty Airflow 2.11 schema."""
    path = directory / "airflow2_template.db"
    if not path.exists():
        building = directory / "airflow2_building.db"
        airflow_migrate(f"sqlite:///{building}", airflow_bin=str(AIRFLOW2_BIN))
        building.rename(path)
    return path


def airflow2_rows(*, dags: int = 5, runs: int = 40, tasks_per_run: int = 4, jobs: int = 20, logs: int = 30,
                  first_run: int = 1) -> dict[str, tuple[tuple[str, ...], list[tuple]]]:
    """Scheduler-like content in Airflow 2.x shape: ``dag_run.execution_date`` and a pickled ``conf``,
    ``task_instance`` keyed by (dag_id, task_id, run_id, map_index) with a pickled ``executor_config``,
    ``task_fail``, ``job``, and FAB users (with a password hash) and roles.

    Instants are aware UTC datetimes; FAB columns are naive (FAB writes local wall-clock time)."""
    import pickle

    utc = dt.UTC
    now = dt.datetime.now(utc).replace(microsecond=0)
    base = dt.datetime(2026, 1, 1, tzinfo=utc)
    tables: dict[str, tuple[tuple[str, ...], list[tuple]]] = {}
    if first_run == 1:
        tables["dag"] = (
            ("dag_id", "is_paused", "is_subdag", "is_active", "last_parsed_time", "fileloc", "owners", "description",
             "schedule_interval", "max_active_tasks", "max_active_runs", "max_consecutive_failed_dag_runs",
             "has_task_concurrency_limits", "has_import_errors"),
            [(f"dag_{d}", d % 7 == 0, False, True, now - dt.timedelta(days=1), f"/opt/airflow/dags/dag_{d}.py",
              "data-team", f"Ünïcode dag № {d} ✓", '"@daily"', 16, 16, 0, False, False) for d in range(1, dags + 1)],
        )
        tables.update(_tag_and_job_rows(dags, jobs, now))
        tables["import_error"] = (
            ("timestamp", "filename", "stacktrace"),
            [(now - dt.timedelta(hours=1), "/opt/airflow/dags/broken.py",
              'Traceback (most recent call last):\n  File "broken.py", line 1\nSyntaxError: invalid "syntax", ok')],
        )
        tables["log"] = (
            ("dttm", "dag_id", "task_id", "event", "execution_date", "owner", "extra"),
            [(now - dt.timedelta(hours=1), f"dag_{n % dags + 1}", "task_1", "running", base, "airflow", '{"k": "v"}')
             for n in range(1, logs + 1)],
        )
        tables["ab_role"] = (("id", "name"), [(1, "Admin"), (2, "Viewer")])
        tables["ab_permission"] = (("id", "name"), [(1, "can_read"), (2, "can_edit")])
        fab_time = dt.datetime(2026, 1, 2, 8, 30, 15, 123456)  # naive, as FAB writes it
        tables["ab_user"] = (
            ("id", "first_name", "last_name", "username", "password", "active", "email", "last_login",
             "login_count", "fail_login_count", "created_on", "changed_on"),
            [(1, "Ada", "Lövelace", "admin", "pbkdf2:sha256:600000$secret-salt$secret-hash-one", True,
              "ada@example.com", fab_time, 3, 0, fab_time, fab_time),
             (2, "Bob", "Viewer", "viewer", "pbkdf2:sha256:600000$other-salt$secret-hash-two", False,
              "bob@example.com", None, 0, 1, fab_time, None)],
        )
        tables["ab_user_role"] = (("id", "user_id", "role_id"), [(1, 1, 1), (2, 2, 2)])
    run_rows, ti_rows, fail_rows = [], [], []
    for r in range(first_run, first_run + runs):
        at = base + dt.timedelta(minutes=r)
        dag_id, run_id = f"dag_{r % dags + 1}", f"scheduled__{r}"
        updated = now - dt.timedelta(days=2) + dt.timedelta(seconds=r, microseconds=r * 7 % 1_000_000)
        conf = pickle.dumps({"run": r, "note": "ok ✓", "nested": {"a": [1, 2]}}) if r % 4 else None
        run_rows.append((dag_id, at, at, at, at + dt.timedelta(minutes=5), "success", run_id, False, "scheduled",
                         conf, at, at + dt.timedelta(days=1), at, updated, 0))
        for t in range(1, tasks_per_run + 1):
            failed = t == tasks_per_run and r % 3 == 0
            ti_rows.append((
                f"task_{t}", dag_id, run_id, -1, at, at + dt.timedelta(seconds=t * 1.234567), t * 1.25,
                "failed" if failed else ("success" if t % 5 else None), 1, 0, "worker-1", "airflow", "default_pool",
                1, "default", t, "PythonOperator",
                pickle.dumps({"pod_override": None, "t": t}) if t % 3 else None,
                updated + dt.timedelta(milliseconds=t), None if t % 2 else '{"x": "ü"}',
            ))
            if failed:
                fail_rows.append((f"task_{t}", dag_id, run_id, -1, at, at + dt.timedelta(seconds=7), 7))
    tables["dag_run"] = (
        ("dag_id", "queued_at", "execution_date", "start_date", "end_date", "state", "run_id", "external_trigger",
         "run_type", "conf", "data_interval_start", "data_interval_end", "last_scheduling_decision", "updated_at",
         "clear_number"),
        run_rows,
    )
    tables["task_instance"] = (
        ("task_id", "dag_id", "run_id", "map_index", "start_date", "end_date", "duration", "state", "try_number",
         "max_tries", "hostname", "unixname", "pool", "pool_slots", "queue", "priority_weight", "operator",
         "executor_config", "updated_at", "next_kwargs"),
        ti_rows,
    )
    tables["task_fail"] = (("task_id", "dag_id", "run_id", "map_index", "start_date", "end_date", "duration"),
                           fail_rows)
    return tables


def fill_airflow2_postgres(url: str, **sizes) -> None:
    """Insert :func:`airflow2_rows` into a PostgreSQL Airflow 2.11 schema."""
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        for table, (columns, rows) in airflow2_rows(**sizes).items():
            names = ", ".join(f'"{name}"' for name in columns)
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)
        for table in ("ab_role", "ab_permission", "ab_user", "ab_user_role"):
            if sizes.get("first_run", 1) == 1:  # explicit ids were inserted: move the sequences past them
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 100)")


def _naive_utc(value):

    return value.astimezone(dt.UTC).replace(tzinfo=None) if isinstance(value, dt.datetime) and value.tzinfo else value


def fill_airflow2_mysql(url: str, **sizes) -> None:
    """Insert :func:`airflow2_rows` into a MySQL/MariaDB Airflow 2.11 schema (instants as naive UTC: the session
    time zone is UTC)."""
    from cdc_sync.urls import make_url

    with mysql_connect(make_url(url).database) as connection, connection.cursor() as cursor:
        for table, (columns, rows) in airflow2_rows(**sizes).items():
            names = ", ".join(f"`{name}`" for name in columns)
            marks = ", ".join(["%s"] * len(columns))
            cursor.executemany(f"INSERT INTO `{table}` ({names}) VALUES ({marks})",
                               [tuple(_naive_utc(value) for value in row) for row in rows])
        connection.commit()


def fill_airflow2_sqlite(path: str | Path, **sizes) -> None:
    """Insert :func:`airflow2_rows` into an SQLite Airflow 2.11 schema, instants as naive UTC text."""
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        for table, (columns, rows) in airflow2_rows(**sizes).items():
            names = ", ".join(f'"{name}"' for name in columns)
            marks = ", ".join(["?"] * len(columns))
            connection.executemany(
                f'INSERT INTO "{table}" ({names}) VALUES ({marks})',
                [tuple(sqlite_text_time(_naive_utc(v)) if isinstance(v, dt.datetime) else v for v in row)
                 for row in rows],
            )
        connection.commit()
    finally:
        connection.close()


def airflow_db_clean(sql_alchemy_conn: str, before: str, airflow_bin: str | None = None) -> str:
    """Airflow's own purge: ``airflow db clean --clean-before-timestamp BEFORE --yes --skip-archive``."""
    airflow_bin = airflow_bin or str(Path(sys.executable).with_name("airflow"))
    home = tempfile.mkdtemp(prefix="airflow-home-")
    env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False"}
    try:
        result = subprocess.run([airflow_bin, "db", "clean", "--clean-before-timestamp", before, "--yes",
                                 "--skip-archive"], env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"airflow db clean failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result.stdout
    finally:
        shutil.rmtree(home, ignore_errors=True)


def airflow_db_clean_mysql(url: str, before: str, airflow_bin: str | None = None) -> str:
    """:func:`airflow_db_clean` on MySQL/MariaDB through pymysql, with the same ``MySQLdb`` shim as
    :func:`airflow_migrate_mysql` (only the subprocess sees it); ``airflow_bin`` picks another Airflow (2.11)."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_mysqldb_shim(), previous]))
    try:
        return airflow_db_clean(url, before, airflow_bin=airflow_bin)
    finally:
        if previous is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = previous
