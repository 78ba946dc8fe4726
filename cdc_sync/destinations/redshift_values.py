"""Values into Redshift within its limits: text cut to VARCHAR's byte limit with a visible marker, and rows grouped
so one multi-row INSERT stays under the statement size and the protocol's parameter count."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from cdc_sync.arrow_kernels import call, maximum
from cdc_sync.destinations.dialect import ColumnSpec
from cdc_sync.types import LogicalType

VARCHAR_MAX_BYTES = 65_535
TRUNCATION_MARKER = "…[truncated by cdc_sync: {size} bytes]"
STATEMENT_LIMIT_BYTES = 16 * 1024 * 1024
STATEMENT_BUDGET_BYTES = 12 * 1024 * 1024  # headroom under the limit for SQL text and encoding overhead
MAX_PARAMETERS = 32_767


def fit_text(value: str, limit: int = VARCHAR_MAX_BYTES) -> str:
    """``value`` if it fits in ``limit`` UTF-8 bytes, else its longest prefix that fits with the marker."""
    encoded = value.encode()
    if len(encoded) <= limit:
        return value
    marker = TRUNCATION_MARKER.format(size=len(encoded))
    room = limit - len(marker.encode())
    return encoded[:room].decode("utf-8", errors="ignore") + marker


def fit_batch(batch: pa.RecordBatch, columns: Sequence[ColumnSpec]) -> pa.RecordBatch:
    """Truncate (with a marker) only the text values over the VARCHAR byte limit; the rest pass untouched."""
    arrays = list(batch.columns)
    for index, column in enumerate(columns):
        if column.logical_type is not LogicalType.TEXT:
            continue
        if (maximum(call("binary_length", arrays[index])) or 0) <= VARCHAR_MAX_BYTES:
            continue
        arrays[index] = pa.array([None if v is None else fit_text(v) for v in arrays[index].to_pylist()], pa.string())
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _size(value: Any) -> int:
    if isinstance(value, str | bytes):
        return len(value) * (2 if isinstance(value, bytes) else 1) + 8  # bytes travel as hex
    return 16


def row_chunks(batches: Iterable[pa.RecordBatch], columns: Sequence[ColumnSpec]) -> Iterator[list[tuple]]:
    """Rows grouped so one multi-row INSERT stays under the parameter and statement-size limits."""
    per_statement = max(1, MAX_PARAMETERS // max(1, len(columns)))
    chunk: list[tuple] = []
    size = 0
    for batch in batches:
        batch = fit_batch(batch.select([c.name for c in columns]), columns)
        for row in zip(*(array.to_pylist() for array in batch.columns), strict=True):
            row_size = sum(_size(v) for v in row)
            if chunk and (len(chunk) >= per_statement or size + row_size > STATEMENT_BUDGET_BYTES):
                yield chunk
                chunk, size = [], 0
            chunk.append(row)
            size += row_size
    if chunk:
        yield chunk
