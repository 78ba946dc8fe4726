"""Bytes arrive from COPY as hex text; they are decoded in bulk by Arrow kernels, without pyarrow.compute."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest

from cdc_sync.sources.csv_stream import decode_hex_bytes

VALUES = [b"\x00\x01\xfe\xff", None, b"", b"airflow executor config", bytes(range(256))]


def test_postgresql_hex_with_prefix_decodes_every_byte_value() -> None:
    text = pa.array([None if v is None else "\\x" + v.hex() for v in VALUES])
    assert decode_hex_bytes(text).to_pylist() == VALUES


def test_upper_case_hex_without_prefix_decodes() -> None:
    text = pa.array([None if v is None else v.hex().upper() for v in VALUES])
    assert decode_hex_bytes(text, prefix="").to_pylist() == VALUES


def test_a_sliced_array_decodes_only_its_values() -> None:
    text = pa.array(["\\x" + v.hex() for v in (b"ab", b"cde", b"f")])[1:]
    assert decode_hex_bytes(text).to_pylist() == [b"cde", b"f"]


@pytest.mark.parametrize("bad", ["\\xabc", "\\xzz"])
def test_text_that_is_not_hex_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_hex_bytes(pa.array(["\\x00", bad]))


def test_reading_rows_does_not_import_pyarrow_compute() -> None:
    """Its import builds a wrapper for every Arrow kernel, a cost every cycle that reads a row would pay."""
    code = (
        "import sys, pyarrow as pa\n"
        "from cdc_sync.sources.csv_stream import decode_hex_bytes\n"
        "from cdc_sync.transform import Tally\n"
        "decode_hex_bytes(pa.array(['\\\\x0a0b']))\n"
        "list(Tally('t').watch([pa.record_batch({'t': pa.array([1, 3])})]))\n"
        "print('pyarrow.compute' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
