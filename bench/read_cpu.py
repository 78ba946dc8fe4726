"""The CPU one PostgreSQL read costs, client and server apart: a measure a loaded machine does not blur.

Reads one table whole inside a source snapshot, through the CSV path (psycopg COPY) or the ADBC path, and prints
wall seconds, this process's CPU seconds and the server backend's (from ``/proc/PID/stat``: run it on the
database's machine).

Usage: python bench/read_cpu.py SOURCE_URL TABLE {csv,adbc} [--keys COLUMN,COLUMN…]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import cdc_sync.sources.postgres as postgres_source
from cdc_sync.sources import open_source
from cdc_sync.sources.postgres_arrow import fetch_all
from cdc_sync.urls import parse_url


def backend_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("table")
    parser.add_argument("path", choices=("csv", "adbc"))
    parser.add_argument("--keys", help="read only these columns, as delete detection does")
    args = parser.parse_args()
    postgres_source.ARROW_READ_MIN_BYTES = 0 if args.path == "adbc" else 1 << 62
    with open_source(parse_url(args.url, role="source")) as source:
        table = source.describe(args.table)
        with source.snapshot() as snapshot:
            inner = snapshot.inner
            if args.path == "csv":
                pid = inner._connection.info.backend_pid
            else:
                list(snapshot.read_keys(table, (table.columns[0].name,)))  # opens the ADBC side of the snapshot
                pid = fetch_all(inner._joined._connection, "SELECT pg_backend_pid()").column(0)[0].as_py()
            server, client, started = backend_cpu_seconds(pid), client_cpu_seconds(), time.perf_counter()
            batches = (snapshot.read_keys(table, tuple(args.keys.split(","))) if args.keys
                       else snapshot.read_rows(table))
            rows = sum(batch.num_rows for batch in batches)
            wall = time.perf_counter() - started
            client, server = client_cpu_seconds() - client, backend_cpu_seconds(pid) - server
    print(json.dumps({"path": args.path, "rows": rows, "wall_s": round(wall, 2), "client_cpu_s": round(client, 2),
                      "server_cpu_s": round(server, 2), "total_cpu_s": round(client + server, 2)}))


if __name__ == "__main__":
    main()
