"""Versioned DDL of the state tables, read from ``migrations/NNNN_name.toml`` and rendered by the dialect."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from cdc_sync.destinations.dialect import ColumnSpec
from cdc_sync.types import LogicalType

MIGRATIONS_TABLE = "_cdc_migrations"
MIGRATIONS_TABLE_COLUMNS = (
    ColumnSpec("version", LogicalType.INTEGER),
    ColumnSpec("description", LogicalType.TEXT),
    ColumnSpec("applied_at", LogicalType.TIMESTAMP_TZ),
)


@dataclass(frozen=True)
class StateTable:
    name: str
    columns: tuple[ColumnSpec, ...]
    primary_key: tuple[str, ...]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    tables: tuple[StateTable, ...]
    add_columns: tuple[tuple[str, ColumnSpec], ...]


def migrations_directory() -> Path:
    """Installed wheels carry the files inside the package; a source checkout keeps them at the top level."""
    packaged = Path(__file__).resolve().parent / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "migrations"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    migrations = []
    for path in sorted((directory or migrations_directory()).glob("[0-9][0-9][0-9][0-9]_*.toml")):
        document = tomllib.loads(path.read_text())
        tables = tuple(
            StateTable(
                name=table["name"],
                columns=tuple(ColumnSpec(name, LogicalType(kind)) for name, kind in table["columns"]),
                primary_key=tuple(table.get("primary_key", ())),
            )
            for table in document.get("tables", ())
        )
        add_columns = tuple(
            (entry["table"], ColumnSpec(entry["column"], LogicalType(entry["type"])))
            for entry in document.get("add_columns", ())
        )
        migrations.append(Migration(int(path.name[:4]), document.get("description", ""), tables, add_columns))
    return migrations
