"""Column renames in the mirror, for the one case that needs them: an Airflow upgrade retyping a column.

``ALTER TABLE … RENAME COLUMN`` is spelled the same by every supported warehouse (DuckDB, PostgreSQL, Snowflake,
Redshift), so the statement is built here from the dialect's own quoting rather than once per dialect.
"""

from __future__ import annotations

from cdc_sync.destinations.dialect import Dialect, Statement


def rename_column(dialect: Dialect, schema: str, table: str, old: str, new: str) -> Statement:
    return Statement(
        f"ALTER TABLE {dialect.table(schema, table)} RENAME COLUMN {dialect.quote(old)} TO {dialect.quote(new)}"
    )
