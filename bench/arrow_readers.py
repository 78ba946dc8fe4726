"""Arrow-native readers for the MySQL and SQLite sources, timed against the readers cdc_sync uses there.

The ADBC read path replaced PostgreSQL's CSV pipeline; MySQL and SQLite keep theirs unless a maintained
Arrow-native reader does better. This script is how that was tried (results: bench/README.md, "Arrow-native
readers for MySQL and SQLite").

    python bench/arrow_readers.py fill-sqlite FILE ROWS        # task_instance rows of the 1M benchmark source
    python bench/arrow_readers.py fill-mysql DATABASE ROWS     # a task_instance-shaped table on the local MariaDB
    python bench/arrow_readers.py cdc_sync URL TABLE           # cdc_sync's own read, inside its snapshot
    python bench/arrow_readers.py adbc-sqlite FILE TABLE       # adbc-driver-sqlite, then a NULL-first column
    python bench/arrow_readers.py connectorx URL TABLE         # connectorx's MySQL reader

``cdc_sync`` and the fills run in the project's venv; the other two in a venv of their own holding
``bench/requirements-readers.txt`` (the project never depends on them).
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import sqlite3
import sys
import time
import uuid

BENCH_SOURCE = "postgresql://postgres@127.0.0.1:5432/cdc_bench_airflow3_x1"
MYSQL_TABLE_SQL = """
CREATE TABLE task_instance (id BIGINT PRIMARY KEY, dag_id VARCHAR(250) NOT NULL, task_id VARCHAR(250) NOT NULL,
  run_id VARCHAR(250) NOT NULL, map_index INT, start_date TIMESTAMP(6) NULL, end_date TIMESTAMP(6) NULL,
  duration DOUBLE, state VARCHAR(20), try_number INT, hostname VARCHAR(1000), executor_config BLOB,
  queued_dttm TIMESTAMP(6) NULL, next_kwargs JSON, updated_at TIMESTAMP(6) NULL)
"""
# MariaDB's seq_1_to_N engine makes the rows on the server; end_date and queued_dttm start NULL, as in Airflow.
MYSQL_FILL_SQL = """
INSERT INTO task_instance SELECT seq, CONCAT('dag_', seq % 500), CONCAT('task_', seq % 20),
  CONCAT('scheduled__', seq DIV 20), -1, '2026-01-01 00:00:00.123456' + INTERVAL seq SECOND,
  IF(seq > 100000, '2026-01-01 00:01:00.5' + INTERVAL seq SECOND, NULL), 60.5, 'success', 1, 'worker-1',
  UNHEX('80049500'), IF(seq > 300000, NOW(6), NULL), IF(seq % 3 = 0, '{{"a": 1}}', NULL), NOW(6)
FROM seq_1_to_{rows}
"""


def _airflow_text(value: object) -> object:
    """A PostgreSQL value in the form Airflow writes to SQLite: naive UTC text times, hex UUIDs, JSON text."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def fill_sqlite(path: str, rows: int) -> None:
    """Replace the rows of the Airflow 3 SQLite file's task_instance with the benchmark source's first ``rows``."""
    import psycopg

    target = sqlite3.connect(path)
    columns = [row[1] for row in target.execute("PRAGMA table_info(task_instance)")]
    names = ", ".join(f'"{name}"' for name in columns)
    insert = f"INSERT INTO task_instance ({names}) VALUES ({', '.join('?' * len(columns))})"
    target.execute("DELETE FROM task_instance")
    with psycopg.connect(BENCH_SOURCE) as source, source.cursor(name="rows") as cursor:
        cursor.itersize = 20_000
        cursor.execute(f"SELECT {names} FROM task_instance LIMIT %s", (rows,))
        while chunk := cursor.fetchmany(20_000):
            target.executemany(insert, [tuple(_airflow_text(value) for value in row) for row in chunk])
    target.commit()


def fill_mysql(database: str, rows: int) -> None:
    import pymysql

    connection = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        cursor.execute(f"USE `{database}`")
        cursor.execute("DROP TABLE IF EXISTS task_instance")
        cursor.execute(MYSQL_TABLE_SQL)
        cursor.execute(MYSQL_FILL_SQL.format(rows=int(rows)))


def read_cdc_sync(url: str, table: str) -> tuple[int, object]:
    from cdc_sync.sources import open_source
    from cdc_sync.urls import make_url

    rows, schema = 0, None
    with open_source(make_url(url)) as source, source.snapshot() as snapshot:
        for batch in snapshot.read_rows(source.describe(table), None):
            rows, schema = rows + batch.num_rows, batch.schema
    return rows, schema


def read_adbc_sqlite(path: str, table: str) -> tuple[int, object]:
    """The whole table, then the driver's type inference on a column whose first batch holds only NULLs."""
    import adbc_driver_sqlite.dbapi as adbc

    rows = 0
    with adbc.connect(path) as connection, connection.cursor() as cursor:
        cursor.execute(f'SELECT * FROM "{table}"')
        reader = cursor.fetch_record_batch()
        for batch in reader:
            rows += batch.num_rows
        schema = reader.schema
    with adbc.connect(":memory:") as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE t (x TIMESTAMP)")
        cursor.executemany("INSERT INTO t VALUES (?)", [(None,)] * 5_000 + [("2026-01-01 00:00:00.000000",)])
        cursor.execute("SELECT x FROM t")
        try:
            cursor.fetch_arrow_table()
            print("NULL-first column: read", file=sys.stderr)
        except Exception as error:  # the driver's error is the finding
            print(f"NULL-first column: {type(error).__name__}: {error}", file=sys.stderr)
    return rows, schema


def read_connectorx(url: str, table: str) -> tuple[int, object]:
    import connectorx

    result = connectorx.read_sql(url, f"SELECT * FROM `{table}`", return_type="arrow")
    return result.num_rows, result.schema


def main(arguments: list[str]) -> None:
    command, target, argument = arguments
    if command == "fill-sqlite":
        fill_sqlite(target, int(argument))
        return
    if command == "fill-mysql":
        fill_mysql(target, int(argument))
        return
    readers = {"cdc_sync": read_cdc_sync, "adbc-sqlite": read_adbc_sqlite, "connectorx": read_connectorx}
    start = time.perf_counter()
    rows, schema = readers[command](target, argument)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps({"reader": command, "rows": rows, "seconds": round(time.perf_counter() - start, 2),
                      "cpu_seconds": round(time.process_time(), 2), "peak_rss_mib": peak,
                      "types": {field.name: str(field.type) for field in schema}}))


if __name__ == "__main__":
    main(sys.argv[1:])
