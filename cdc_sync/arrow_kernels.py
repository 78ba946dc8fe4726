"""The few Arrow compute kernels of the read path and the log's spool, called by name through Arrow's registry.

``import pyarrow.compute`` (which ``Array.cast`` and ``RecordBatch.filter`` also run on first use) builds a Python
wrapper, docstring included, for each of Arrow's ~500 kernels: 30-70 ms in every process that reads a row or a
log, a tenth of a scheduled cycle. ``call_function`` runs the same C++ kernels without those wrappers.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pyarrow._compute import (
    CastOptions,
    IndexOptions,
    MatchSubstringOptions,
    SetLookupOptions,
    SliceOptions,
    call_function,
)


def call(name: str, *arguments: Any, options: Any = None) -> Any:
    """The kernel ``name`` (as ``pyarrow.compute`` names it) on arrays and scalars."""
    return call_function(name, list(arguments), options)


def cast(array: pa.Array, target: pa.DataType) -> pa.Array:
    return call_function("cast", [array], CastOptions.safe(target))


def maximum(array: pa.Array) -> Any:
    """The largest non-null value as a Python object (None for no value)."""
    return call_function("max", [array]).as_py()


def index_of(array: pa.Array, value: Any) -> int:
    """Position of the first element equal to ``value`` (-1 if none)."""
    return call_function("index", [array], IndexOptions(pa.scalar(value, array.type))).as_py()


def is_in(array: pa.Array, values: pa.Array) -> pa.Array:
    """Whether each element is one of ``values``."""
    return call_function("is_in", [array], SetLookupOptions(values))


def starts_with(array: pa.Array, prefix: str) -> pa.Array:
    return call_function("starts_with", [array], MatchSubstringOptions(prefix))


def slice_codeunits(array: pa.Array, start: int) -> pa.Array:
    return call_function("utf8_slice_codeunits", [array], SliceOptions(start))
