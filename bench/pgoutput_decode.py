"""Decoding speed of cdc_sync's pgoutput decoder (cdc_sync.sources.pgoutput): a burst of Insert messages as wide
as Airflow 3's task_instance, decoded in process. No database: the messages are built here, as PostgreSQL encodes
them.

    .venv/bin/python bench/pgoutput_decode.py [--rows 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import struct
import time

from cdc_sync.sources.pgoutput import decode_all

COLUMNS, NULL_COLUMNS, VALUE_BYTES = 39, 4, 24


def insert_message(relation_id: int = 16384) -> bytes:
    text = b"t" + struct.pack("!I", VALUE_BYTES) + b"x" * VALUE_BYTES
    columns = [text] * (COLUMNS - NULL_COLUMNS) + [b"n"] * NULL_COLUMNS
    return b"I" + struct.pack("!I", relation_id) + b"N" + struct.pack("!H", COLUMNS) + b"".join(columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    messages = [insert_message()] * options.rows
    timings = []
    for _ in range(options.repeat):
        started = time.perf_counter()
        decoded = sum(1 for data in messages for _ in decode_all(data))
        timings.append(time.perf_counter() - started)
        assert decoded == options.rows
    print(f"{options.rows} Insert messages of {COLUMNS} columns: best {min(timings):.3f} s, "
          f"median {sorted(timings)[len(timings) // 2]:.3f} s over {options.repeat} runs")


if __name__ == "__main__":
    main()
