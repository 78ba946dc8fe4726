"""The key-set digest: a cheap exact check that the source and the mirror hold the same keys.

Equal row counts do not prove equal key sets: one missed insert and one real delete balance out. Each side
therefore also sums two 32-bit slices of the MD5 of every key rendered as text, in SQL, without moving a key over
the network. The two sums (into 64-bit or wider integers: no overflow below 2^31 rows) and the count must all agree
for the key comparison to be skipped.

Both sides must render a key identically, so only keys made of text and integer columns qualify; any other key
(and a key column copied as a digest, see ``--hash-column``) falls back to the full key comparison. Columns are
joined by :data:`SEPARATOR`, and NULL is written as :data:`NULL_MARKER`; both are bound as parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdc_sync.types import LogicalType

SEPARATOR = "\x1f"  # ASCII unit separator: no Airflow key holds it
NULL_MARKER = "\x1e"  # ASCII record separator, for a NULL key part
RENDERABLE_TYPES = frozenset({LogicalType.TEXT, LogicalType.INTEGER})


@dataclass(frozen=True)
class KeyDigest:
    """A table's row count and the two sums of MD5 slices of its keys."""

    rows: int
    high: int
    low: int

    @classmethod
    def from_row(cls, row: Sequence[object]) -> KeyDigest:
        rows, high, low = row
        return cls(int(rows), int(high or 0), int(low or 0))  # type: ignore[call-overload]


def renderable(types: Sequence[LogicalType]) -> bool:
    """Whether every key column renders as the same text in every source and warehouse."""
    return bool(types) and all(kind in RENDERABLE_TYPES for kind in types)


def parameters(columns: int) -> tuple[str, ...]:
    """The bound values of a rendered key of ``columns`` columns, in the order the SQL uses them."""
    values: list[str] = []
    for index in range(columns):
        if index:
            values.append(SEPARATOR)
        values.append(NULL_MARKER)
    return tuple(values)
