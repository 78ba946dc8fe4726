"""Turn a byte stream of CSV (as databases emit from COPY) into typed Arrow batches, in bounded memory.

Parsing happens in Arrow's C++ CSV reader: no Python object is created per row. Only ``bytes`` columns, which
databases render as hex text, are converted per value, and those are rare and small in Airflow.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.csv as pa_csv

from cdc_sync.types import ARROW_TYPES, Column, LogicalType

BLOCK_SIZE = 8 << 20  # bytes of CSV per Arrow batch: bounds memory, large enough to amortise per-batch costs


class ChunkReader(io.RawIOBase):
    """A file-like view over an iterator of byte chunks (e.g. psycopg's ``Copy``)."""

    def __init__(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        self._chunks = iter(chunks)
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._current:
            try:
                self._current = memoryview(bytes(next(self._chunks)))
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        return size


def _csv_type(column: Column) -> pa.DataType:
    # Bytes arrive as hex text and are decoded after parsing.
    return pa.string() if column.logical_type is LogicalType.BYTES else ARROW_TYPES[column.logical_type]


def decode_hex_bytes(array: pa.Array, prefix: str = "\\x") -> pa.Array:
    """``\\x0a0b`` (PostgreSQL) or ``0A0B`` (others) text to binary."""
    skip = len(prefix)
    values = array.to_pylist()
    return pa.array(
        [None if value is None else bytes.fromhex(value[skip:] if value.startswith(prefix) else value)
         for value in values],
        type=pa.binary(),
    )


def csv_batches(
    stream: io.RawIOBase,
    columns: tuple[Column, ...],
    *,
    true_values: tuple[str, ...] = ("t", "true", "1"),
    false_values: tuple[str, ...] = ("f", "false", "0"),
    hex_prefix: str = "\\x",
) -> Iterator[pa.RecordBatch]:
    """Parse headerless CSV where an unquoted empty field is NULL and ``""`` is the empty string."""
    names = [column.name for column in columns]
    buffered = io.BufferedReader(stream, buffer_size=1 << 20)
    if not buffered.peek(1):
        return  # no rows: Arrow refuses an empty CSV stream
    reader = pa_csv.open_csv(
        buffered,
        read_options=pa_csv.ReadOptions(column_names=names, block_size=BLOCK_SIZE, use_threads=False),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={column.name: _csv_type(column) for column in columns},
            true_values=list(true_values),
            false_values=list(false_values),
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
        ),
    )
    byte_columns = [i for i, column in enumerate(columns) if column.logical_type is LogicalType.BYTES]
    target = pa.schema([pa.field(c.name, ARROW_TYPES[c.logical_type]) for c in columns])
    for batch in reader:
        if batch.num_rows == 0:
            continue
        if byte_columns:
            arrays = list(batch.columns)
            for index in byte_columns:
                arrays[index] = decode_hex_bytes(arrays[index], hex_prefix)
            batch = pa.RecordBatch.from_arrays(arrays, schema=target)
        yield batch
