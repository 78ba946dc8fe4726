"""Per-batch transformations applied between source and warehouse."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa

from cdc_sync.arrow_kernels import cast, index_of, maximum


def hash_columns(batches: Iterable[pa.RecordBatch], names: frozenset[str],
                 hex_digest: Callable[[bytes], str]) -> Iterator[pa.RecordBatch]:
    """Replace personal data by a hex digest (see :mod:`cdc_sync.digests` for what each kind hides), so it can
    still be joined and counted."""
    for batch in batches:
        if not names:
            yield batch
            continue
        arrays = list(batch.columns)
        for index, name in enumerate(batch.schema.names):
            if name in names:
                values = cast(arrays[index], pa.string()).to_pylist()
                arrays[index] = pa.array(
                    [None if v is None else hex_digest(v.encode()) for v in values], pa.string()
                )
        yield pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


class Tally:
    """Counts rows and tracks the maximum of one column while batches stream past, with the ``key`` values of a
    row holding it."""

    def __init__(self, column: str | None, key: tuple[str, ...] = ()) -> None:
        self.column = column
        self.key = key
        self.rows = 0
        self.maximum: object | None = None
        self.maximum_key: tuple[object, ...] | None = None

    def watch(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            self.rows += batch.num_rows
            if self.column is not None and batch.num_rows:
                column = batch.column(self.column)
                value = maximum(column)
                if value is not None and (self.maximum is None or value > self.maximum):
                    self.maximum = value
                    if self.key:
                        row = index_of(column, value)
                        self.maximum_key = tuple(batch.column(name)[row].as_py() for name in self.key)
            yield batch


def take_rows(batches: Iterator[pa.RecordBatch], limit: int) -> Iterator[pa.RecordBatch]:
    """Yield batches from a shared iterator until at least ``limit`` rows have passed (the rest stay for later)."""
    rows = 0
    for batch in batches:
        yield batch
        rows += batch.num_rows
        if rows >= limit:
            return
