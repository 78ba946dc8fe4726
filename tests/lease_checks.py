"""The lease contract shared by the warehouses without advisory locks (Snowflake, Redshift)."""

from __future__ import annotations

from cdc_sync.destinations.base import Destination


def check_table_leases(first: Destination, second: Destination, schema: str) -> None:
    """Table leases exclude each other per table only, and are independent of the schema lease."""
    assert first.try_lock(schema)
    assert first.try_lock(schema, "dag")
    assert not second.try_lock(schema, "dag")  # one table, one cycle at a time
    assert second.try_lock(schema, "dag_run")  # another table, at the same time
    first.unlock(schema)
    assert second.try_lock(schema)  # the schema lease is free while the table leases are held
    assert not first.try_lock(schema, "dag_run")
    second.unlock(schema, "dag_run")
    assert first.try_lock(schema, "dag_run")
