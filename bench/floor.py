"""The raw floor: what any tool must at least spend to copy the tables, with no state, no merge and no care.

Per table, the CSV floor: ``COPY (SELECT * FROM t) TO STDOUT`` into memory, that CSV parsed by Arrow's
multi-threaded reader, and the Arrow table loaded into a fresh DuckDB file. With ``--adbc``, the ADBC floor:
``SELECT * FROM t`` through ADBC's PostgreSQL driver (``COPY … (FORMAT BINARY)`` decoded into Arrow batches in C++),
streamed by DuckDB's ``CREATE TABLE AS`` from the batch reader (read and load overlap, so they are timed as one).
Prints one JSON object with the seconds of each phase.

Usage: python bench/floor.py [--adbc] SOURCE_URL DUCKDB_PATH TABLE [TABLE ...]
"""

from __future__ import annotations

import io
import json
import sys
import time

import duckdb
import psycopg
import pyarrow.csv as pa_csv


def copy_out(connection: psycopg.Connection, table: str) -> bytes:
    buffer = io.BytesIO()
    with connection.cursor().copy(f'COPY (SELECT * FROM "{table}") TO STDOUT (FORMAT CSV, HEADER)') as copy:
        for chunk in copy:
            buffer.write(chunk)
    return buffer.getvalue()


def main(url: str, path: str, tables: list[str]) -> dict[str, dict[str, float]]:
    phases: dict[str, dict[str, float]] = {}
    with psycopg.connect(url) as source, duckdb.connect(path) as target:
        source.execute("SET TIME ZONE 'UTC'")
        for table in tables:
            started = time.perf_counter()
            data = copy_out(source, table)
            copied = time.perf_counter()
            arrow = pa_csv.read_csv(io.BytesIO(data), parse_options=pa_csv.ParseOptions(newlines_in_values=True))
            del data
            parsed = time.perf_counter()
            target.register("arrow_table", arrow)
            target.execute(f'CREATE OR REPLACE TABLE "{table}" AS SELECT * FROM arrow_table')
            target.unregister("arrow_table")
            loaded = time.perf_counter()
            phases[table] = {
                "rows": arrow.num_rows,
                "copy_s": copied - started,
                "to_arrow_s": parsed - started,
                "load_s": loaded - parsed,
                "floor_s": loaded - started,
            }
    return phases


def main_adbc(url: str, path: str, tables: list[str]) -> dict[str, dict[str, float]]:
    import adbc_driver_postgresql.dbapi as adbc

    phases: dict[str, dict[str, float]] = {}
    with adbc.connect(url, autocommit=True) as source, duckdb.connect(path) as target:
        for table in tables:
            started = time.perf_counter()
            with source.cursor() as cursor:
                cursor.execute(f'SELECT * FROM "{table}"')
                reader = cursor.fetch_record_batch()
                target.register("arrow_reader", reader)
                target.execute(f'CREATE OR REPLACE TABLE "{table}" AS SELECT * FROM arrow_reader')
                target.unregister("arrow_reader")
            loaded = time.perf_counter()
            rows = target.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]
            phases[table] = {"rows": rows, "floor_s": loaded - started}
    return phases


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[0] == "--adbc":
        print(json.dumps(main_adbc(arguments[1], arguments[2], arguments[3:])))
    else:
        print(json.dumps(main(arguments[0], arguments[1], arguments[2:])))
