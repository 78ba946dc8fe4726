"""Compare a source table with its mirror, row by row and column by column, with each side's own driver."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import duckdb
import psycopg

from cdc_sync.urls import make_url

# The merge key of each mirrored Airflow table in these tests (natural keys where Airflow's id is not stable).
AIRFLOW_KEYS: dict[str, list[str]] = {
    "dag": ["dag_id"],
    "dag_run": ["dag_id", "run_id"],
    "dag_tag": ["name", "dag_id"],
    "import_error": ["id"],
    "job": ["id"],
    "task_instance": ["dag_id", "task_id", "run_id", "map_index"],
    "log": ["id"],
}


def normalize(value: Any) -> Any:
    """One form per value: JSON parsed, UUIDs as text, instants in UTC, bytes as bytes."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, date | bytes | int | float | bool | dict | list) or value is None:
        return value
    return value


def source_rows(source_url: str, table: str, columns: list[str], key: list[str]) -> dict[tuple, dict[str, Any]]:
    select = ", ".join(f'"{c}"' for c in columns)
    with psycopg.connect(source_url) as connection:
        rows = connection.execute(f'SELECT {select} FROM "{table}"').fetchall()
    return _keyed(rows, columns, key)


def mirror_rows(destination_url: str, schema: str, table: str, columns: list[str], key: list[str],
                live_only: bool = True) -> dict[tuple, dict[str, Any]]:
    select = ", ".join(f'"{c}"' for c in columns)
    where = ' WHERE "_cdc_deleted_at" IS NULL' if live_only else ""
    sql = f'SELECT {select} FROM "{schema}"."{table}"{where}'
    return _keyed(mirror_query(destination_url, sql), columns, key)


def mirror_query(destination_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    url = make_url(destination_url)
    if url.get_backend_name() == "duckdb":
        connection = duckdb.connect(url.database)
        try:
            connection.execute("SET TimeZone = 'UTC'")
            return connection.execute(sql.replace("%s", "?"), list(params)).fetchall()
        finally:
            connection.close()
    with psycopg.connect(destination_url) as connection:
        return connection.execute(sql, params or None).fetchall()


def _keyed(rows: list[tuple], columns: list[str], key: list[str]) -> dict[tuple, dict[str, Any]]:
    keyed: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        record = {c: normalize(v) for c, v in zip(columns, row, strict=True)}
        identity = tuple(record[k] for k in key)
        assert identity not in keyed, f"duplicate key {identity}"
        keyed[identity] = record
    return keyed


def source_columns(source_url: str, table: str) -> list[str]:
    with psycopg.connect(source_url) as connection:
        rows = connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s "
            "ORDER BY ordinal_position", (table,)).fetchall()
    return [r[0] for r in rows]


def assert_mirrored(source_url: str, destination_url: str, schema: str, table: str, key: list[str],
                    exclude: tuple[str, ...] = ()) -> int:
    """Every live source row equals its mirror copy in every column; returns the number of rows compared."""
    columns = [c for c in source_columns(source_url, table) if c not in exclude]
    expected = source_rows(source_url, table, columns, key)
    actual = mirror_rows(destination_url, schema, table, columns, key)
    assert set(actual) == set(expected), (
        f"{table}: missing {sorted(set(expected) - set(actual))[:5]}, extra {sorted(set(actual) - set(expected))[:5]}"
    )
    for identity, row in expected.items():
        for column, value in row.items():
            assert actual[identity][column] == value, (
                f"{table}{identity}.{column}: source {value!r} != mirror {actual[identity][column]!r}"
            )
    return len(expected)
