"""The raw floor: what any tool must at least spend to copy the tables, with no state, no merge and no care.

Per table: ``COPY (SELECT * FROM t) TO STDOUT`` into memory, that CSV parsed by Arrow's multi-threaded reader, and
the Arrow table loaded into a fresh DuckDB file. Prints one JSON object with the seconds of each phase.

Usage: python bench/floor.py SOURCE_URL DUCKDB_PATH TABLE [TABLE ...]
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


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3:])))
