"""Applying one table's log changes (:class:`cdc_sync.log_changes.TableLogChanges`) to its mirror, through the same
staging tables and dialect MERGE as the query mode, inside the table's transaction, one segment of changes after
another; in each, first a TRUNCATE, then the deletes, then the upserts, one MERGE per group of rows carrying the
same columns (an unchanged TOASTed column is left out of its group's MERGE, so the mirror keeps its value).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

import pyarrow as pa

from cdc_sync import faults
from cdc_sync.destinations.base import Destination
from cdc_sync.destinations.dialect import ColumnSpec
from cdc_sync.log_changes import TableLogChanges
from cdc_sync.plan import TablePlan

Transform = Callable[[Iterable[pa.RecordBatch]], Iterable[pa.RecordBatch]]


def apply_log_changes(destination: Destination, schema: str, plan: TablePlan, segments: Iterable[TableLogChanges],
                      synced_at: datetime, transform: Transform) -> tuple[int, int, int]:
    """Write the changes, segment after segment (each collapsed on its own: applied in order, they leave the mirror
    as their whole would); returns the rows written and deleted, and the changes read. ``transform`` is applied to
    every batch (hashed columns), as to the query mode's rows."""
    written = deleted = read = 0
    for changes in segments:
        segment_written, segment_deleted = _apply_segment(destination, schema, plan, changes, synced_at, transform)
        written += segment_written
        deleted += segment_deleted
        read += changes.changes_read
    faults.point("merge")
    return written, deleted, read


def _apply_segment(destination: Destination, schema: str, plan: TablePlan, changes: TableLogChanges,
                   synced_at: datetime, transform: Transform) -> tuple[int, int]:
    dialect = destination.dialect
    deleted = 0
    if plan.delete_mode != "ignore":
        if changes.truncated:
            statement = (dialect.delete_all(schema, plan.name) if plan.delete_mode == "hard"
                         else dialect.soft_delete_all(schema, plan.name, synced_at))
            deleted += max(destination.execute(statement), 0)
        if changes.deleted_keys:
            deleted += _delete_listed(destination, schema, plan, changes, synced_at, transform)
    written = 0
    for group in changes.upserts:
        columns = tuple(ColumnSpec(name, plan.table.column(name).logical_type) for name in group.columns)
        staging = dialect.staging_name(plan.name)
        destination.execute(dialect.drop_staging(staging))
        destination.execute(dialect.create_staging(staging, columns))
        if destination.load(staging, columns, transform(group.batches)):
            # Every row here is a version the log says was committed, so no row is compared column by column first:
            # the comparison made the warehouse read every column of the whole mirror (the join's probe side), a
            # cost that grew with the table, not with the changes.
            merge = dialect.merge(schema, plan.name, staging, group.columns, plan.merge_key, None,
                                  plan.nullable_key, synced_at, compare_rows=False)
            written += max(destination.execute(merge), 0)
        destination.execute(dialect.drop_staging(staging))
    return written, deleted


def _delete_listed(destination: Destination, schema: str, plan: TablePlan, changes: TableLogChanges,
                   synced_at: datetime, transform: Transform) -> int:
    """Delete by the replica identity the log sent (the primary key under REPLICA IDENTITY DEFAULT), matched
    against the mirror's copy of those columns, whatever the merge key."""
    dialect = destination.dialect
    keys = dialect.staging_name(plan.name, "keys")
    key_columns = tuple(ColumnSpec(name, plan.table.column(name).logical_type) for name in changes.identity)
    destination.execute(dialect.drop_staging(keys))
    destination.execute(dialect.create_staging(keys, key_columns))
    destination.load(keys, key_columns, transform(changes.deleted_keys))  # a hashed key column matches its digest
    if plan.delete_mode == "hard":
        statement = dialect.hard_delete_listed(schema, plan.name, keys, changes.identity, frozenset())
    else:
        statement = dialect.soft_delete_listed(schema, plan.name, keys, changes.identity, frozenset(), synced_at)
    deleted = max(destination.execute(statement), 0)
    destination.execute(dialect.drop_staging(keys))
    return deleted
