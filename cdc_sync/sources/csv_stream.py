"""Turn a byte stream of CSV (as databases emit from COPY) into typed Arrow batches, in bounded memory.

Parsing happens in Arrow's C++ CSV reader: no Python object is created per row. ``bytes`` columns, which databases
render as hex text, are decoded in bulk by Arrow compute kernels too.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

import pyarrow as pa
import pyarrow.csv as pa_csv

from cdc_sync.arrow_kernels import call, cast, maximum, slice_codeunits, starts_with
from cdc_sync.types import ARROW_TYPES, Column, LogicalType

BLOCK_SIZE = 4 << 20  # bytes of CSV parsed at a time: bounds memory, large enough to amortise per-block costs
# Blocks read ahead while the previous one is parsed and written: memory holds at most this many more blocks.
READ_AHEAD_BLOCKS = 2
PARSED_BATCHES_AHEAD = 8  # Arrow cuts a block into ~1 MB batches
_END = object()
T = TypeVar("T")


def _csv_type(column: Column) -> pa.DataType:
    # Bytes arrive as hex text and are decoded after parsing.
    return pa.string() if column.logical_type is LogicalType.BYTES else ARROW_TYPES[column.logical_type]


def _hex_digit_values() -> pa.Array:
    table = [255] * 256
    for value, digit in enumerate(b"0123456789abcdef"):
        table[digit] = value
    for value, digit in enumerate(b"ABCDEF", start=10):
        table[digit] = value
    return pa.array(table, type=pa.uint8())


_HEX_DIGIT_VALUES = _hex_digit_values()


def decode_hex_bytes(array: pa.Array, prefix: str = "\\x") -> pa.Array:
    """``\\x0a0b`` (PostgreSQL) or ``0A0B`` (others) text to binary.

    Decoded in bulk over Arrow's buffers with compute kernels (no Python object per value): executor configs ride
    on every task instance. Input that is not plain hex takes the per-value path, which raises on it.
    """
    if prefix:
        array = call("if_else", starts_with(array, prefix), slice_codeunits(array, len(prefix)), array)
    array = pa.concat_arrays([cast(array, pa.binary())])  # offset 0, buffers of its own
    validity, offsets_buffer, data_buffer = array.buffers()
    offsets = pa.Array.from_buffers(pa.int32(), len(array) + 1, [None, offsets_buffer])
    size = offsets[-1].as_py()
    odd_lengths = call("any", call("not_equal", call("bit_wise_and", offsets, pa.scalar(1, pa.int32())),
                                   pa.scalar(0, pa.int32())))
    if sys.byteorder != "little" or size % 2 or odd_lengths.as_py():
        return _decode_hex_per_value(array)
    digits = call("take", _HEX_DIGIT_VALUES, pa.Array.from_buffers(pa.uint8(), size, [None, data_buffer]))
    if size and maximum(digits) == 255:
        return _decode_hex_per_value(array)
    # Two digits side by side read as one little-endian uint16: the first digit is the low byte.
    pairs = pa.Array.from_buffers(pa.uint16(), size // 2, [None, digits.buffers()[1]])
    high = call("shift_left", call("bit_wise_and", pairs, pa.scalar(0x0F, pa.uint16())), pa.scalar(4, pa.uint16()))
    decoded = cast(call("bit_wise_or", high, call("shift_right", pairs, pa.scalar(8, pa.uint16()))), pa.uint8())
    halved = cast(call("divide", offsets, pa.scalar(2, pa.int32())), pa.int32())
    return pa.Array.from_buffers(
        pa.binary(), len(array), [validity, halved.buffers()[1], decoded.buffers()[1]], array.null_count
    )


def _decode_hex_per_value(array: pa.Array) -> pa.Array:
    return pa.array([None if value is None else bytes.fromhex(value.decode("ascii")) for value in array.to_pylist()],
                    type=pa.binary())


def csv_batches(
    chunks: Iterable[bytes | bytearray | memoryview],
    columns: tuple[Column, ...],
    *,
    true_values: tuple[str, ...] = ("t", "true", "1"),
    false_values: tuple[str, ...] = ("f", "false", "0"),
    hex_prefix: str = "\\x",
) -> Iterator[pa.RecordBatch]:
    """Parse headerless CSV where an unquoted empty field is NULL and ``""`` is the empty string.

    Every chunk must end on a record boundary (a COPY data message is one row; MySQL lines are joined whole), so
    blocks of about BLOCK_SIZE bytes are cut between chunks and parsed one at a time, on all cores. The chunks are
    read on a thread of their own (see :func:`read_ahead`), so the database keeps sending while a block is parsed
    and written. Memory holds a few blocks and their batches, however long the stream.
    """
    options = {
        "read_options": pa_csv.ReadOptions(column_names=[column.name for column in columns]),
        "parse_options": pa_csv.ParseOptions(newlines_in_values=True),
        "convert_options": pa_csv.ConvertOptions(
            column_types={column.name: _csv_type(column) for column in columns},
            true_values=list(true_values),
            false_values=list(false_values),
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
        ),
    }
    byte_columns = [i for i, column in enumerate(columns) if column.logical_type is LogicalType.BYTES]
    target = pa.schema([pa.field(c.name, ARROW_TYPES[c.logical_type]) for c in columns])

    def parsed(blocks: Iterator[bytearray]) -> Iterator[pa.RecordBatch]:
        for block in blocks:
            for batch in pa_csv.read_csv(pa.BufferReader(block), **options).to_batches():
                if batch.num_rows == 0:
                    continue
                if byte_columns:
                    arrays = list(batch.columns)
                    for index in byte_columns:
                        arrays[index] = decode_hex_bytes(arrays[index], hex_prefix)
                    batch = pa.RecordBatch.from_arrays(arrays, schema=target)
                yield batch

    # Three stages on three threads: the driver reads rows into blocks, Arrow parses blocks into batches, and the
    # caller (the warehouse load) consumes batches.
    yield from read_ahead(parsed(read_ahead(_blocks(chunks))), depth=PARSED_BATCHES_AHEAD)


def _blocks(chunks: Iterable[bytes | bytearray | memoryview]) -> Iterator[bytearray]:
    # Appended into one buffer as they arrive: no per-row object outlives its row (which would also wake the
    # garbage collector's full passes, once a tenth of a million-row read).
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        if len(pending) >= BLOCK_SIZE:
            yield pending
            pending = bytearray()
    if pending:
        yield pending


def read_ahead(items: Iterator[T], depth: int = READ_AHEAD_BLOCKS) -> Iterator[T]:
    """Pull ``items`` on a background thread, ``depth`` items ahead of the caller.

    Reading a COPY stream is mostly waiting on the socket and per-message work in the driver, while parsing and
    writing a block are C++ that release the GIL: overlapped, the server streams the next rows while DuckDB
    compresses the last ones. The reader stops when the caller does (finished, failed or closed early) and is
    joined before this generator returns, so the connection is never used by two threads at once. An error raised
    while reading is re-raised here, in the caller's thread.
    """
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_END)
        except BaseException as error:  # handed to the caller's thread, raised there
            offer(error)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # an inner read_ahead stops and joins its own reader here, on this thread

    reader = threading.Thread(target=read, name="cdc_sync-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()
