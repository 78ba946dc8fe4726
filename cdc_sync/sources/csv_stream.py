"""Turn a byte stream of CSV (as databases emit from COPY) into typed Arrow batches, in bounded memory.

Parsing happens in Arrow's C++ CSV reader: no Python object is created per row. ``bytes`` columns, which databases
render as hex text, are decoded in bulk by Arrow compute kernels too.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.csv as pa_csv

from cdc_sync.types import ARROW_TYPES, Column, LogicalType

BLOCK_SIZE = 4 << 20  # bytes of CSV parsed at a time: bounds memory, large enough to amortise per-block costs


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
    import pyarrow.compute as pc  # its import builds ~500 wrappers: paid only by reads that carry bytes

    if prefix:
        array = pc.if_else(pc.starts_with(array, prefix), pc.utf8_slice_codeunits(array, len(prefix)), array)
    array = pa.concat_arrays([array.cast(pa.binary())])  # offset 0, buffers of its own
    validity, offsets_buffer, data_buffer = array.buffers()
    offsets = pa.Array.from_buffers(pa.int32(), len(array) + 1, [None, offsets_buffer])
    size = offsets[-1].as_py()
    if sys.byteorder != "little" or size % 2 or pc.any(pc.not_equal(pc.bit_wise_and(offsets, 1), 0)).as_py():
        return _decode_hex_per_value(array)
    digits = pc.take(_HEX_DIGIT_VALUES, pa.Array.from_buffers(pa.uint8(), size, [None, data_buffer]))
    if size and pc.max(digits).as_py() == 255:
        return _decode_hex_per_value(array)
    # Two digits side by side read as one little-endian uint16: the first digit is the low byte.
    pairs = pa.Array.from_buffers(pa.uint16(), size // 2, [None, digits.buffers()[1]])
    high = pc.shift_left(pc.bit_wise_and(pairs, 0x0F), 4)
    decoded = pc.cast(pc.bit_wise_or(high, pc.shift_right(pairs, 8)), pa.uint8())
    halved = pc.cast(pc.divide(offsets, 2), pa.int32())
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
    blocks of about BLOCK_SIZE bytes are cut between chunks and parsed one at a time, on all cores. Memory holds
    one block and its batches, however long the stream.
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
    for block in _blocks(chunks):
        for batch in pa_csv.read_csv(pa.BufferReader(block), **options).to_batches():
            if batch.num_rows == 0:
                continue
            if byte_columns:
                arrays = list(batch.columns)
                for index in byte_columns:
                    arrays[index] = decode_hex_bytes(arrays[index], hex_prefix)
                batch = pa.RecordBatch.from_arrays(arrays, schema=target)
            yield batch


def _blocks(chunks: Iterable[bytes | bytearray | memoryview]) -> Iterator[bytes]:
    pending: list[bytes | bytearray | memoryview] = []
    size = 0
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= BLOCK_SIZE:
            yield b"".join(pending)
            pending, size = [], 0
    if size:
        yield b"".join(pending)
