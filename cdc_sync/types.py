"""Logical column types: the common language between sources, Arrow batches and warehouse dialects.

A source maps its native types to a :class:`LogicalType`; a dialect maps a logical type to its own SQL type.
Keeping the set small is deliberate: every destination must hold every logical type exactly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import pyarrow as pa


class LogicalType(enum.StrEnum):
    BOOLEAN = "boolean"
    INTEGER = "integer"  # any integer width; carried as int64
    DOUBLE = "double"
    TEXT = "text"
    JSON = "json"  # carried as its text
    BYTES = "bytes"
    TIMESTAMP_TZ = "timestamp_tz"  # an instant, carried in UTC to the microsecond
    TIMESTAMP = "timestamp"  # a naive wall-clock time (FAB tables, SQLite)
    DATE = "date"


ARROW_TYPES: dict[LogicalType, pa.DataType] = {
    LogicalType.BOOLEAN: pa.bool_(),
    LogicalType.INTEGER: pa.int64(),
    LogicalType.DOUBLE: pa.float64(),
    LogicalType.TEXT: pa.string(),
    LogicalType.JSON: pa.string(),
    LogicalType.BYTES: pa.binary(),
    LogicalType.TIMESTAMP_TZ: pa.timestamp("us", tz="UTC"),
    LogicalType.TIMESTAMP: pa.timestamp("us"),
    LogicalType.DATE: pa.date32(),
}


@dataclass(frozen=True)
class Column:
    name: str
    logical_type: LogicalType
    nullable: bool = True
    source_type: str = ""


@dataclass(frozen=True)
class TableSchema:
    """What introspection tells about one source table."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    unique_keys: tuple[tuple[str, ...], ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def has_column(self, name: str) -> bool:
        return any(column.name == name for column in self.columns)


def arrow_schema(columns: tuple[Column, ...] | list[Column]) -> pa.Schema:
    return pa.schema([pa.field(column.name, ARROW_TYPES[column.logical_type]) for column in columns])
