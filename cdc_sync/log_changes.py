"""One table's decoded log changes, collapsed into what a cycle applies: the rows to upsert (the last version of
each merge key, in LSN order), the replica-identity keys to delete, and whether the table was truncated.

Rules that keep the mirror exact:

- An unchanged TOASTed value (pgoutput's ``u``) is not NULL: the mirror keeps what it has. Rows are grouped by their
  set of unchanged columns, and each group is merged with only the columns it carries, so the MERGE never touches
  the others. An earlier version of the same row within the batch supplies the value when it has one.
- Under REPLICA IDENTITY DEFAULT a DELETE carries only the primary key, which need not be the mirror's merge key
  (Airflow 3's task_instance has a UUID ``id`` and the natural merge key dag_id, task_id, run_id, map_index). Deletes
  are therefore resolved through the mirror's own copy of the replica identity columns, and applied before the
  upserts: a row deleted and written again within the batch ends up written.
- An UPDATE that changes the replica identity (a new task instance UUID) deletes the old identity, then upserts
  (the spool, :mod:`cdc_sync.log_spool`, records it as those two changes).
- A TRUNCATE forgets every change before it, and empties the mirror first.
- A table's changes are collapsed :data:`SEGMENT_CHANGES` at a time (:func:`collapse_in_segments`): each segment is
  applied before the next, so the rules above hold across segments as within one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice

import pyarrow as pa
import pyarrow.csv as pa_csv

from cdc_sync.errors import SourceError
from cdc_sync.plan import TablePlan
from cdc_sync.sources.csv_stream import csv_batches
from cdc_sync.sources.pgoutput import UNCHANGED_TOAST, Value

RowValues = dict[str, Value]
# Changes collapsed and applied at a time: bounds a cycle's memory when one table changed more.
SEGMENT_CHANGES = 100_000


@dataclass(frozen=True)
class LoggedChange:
    """One change of a table as the log holds it: ``kind`` is upsert, delete or truncate; ``values`` maps column
    names to their text forms (for a delete, the replica identity columns only)."""

    end_lsn: int  # the end of its transaction's commit record
    kind: str
    values: RowValues = field(default_factory=dict)
    lsn: int = 0  # its own message's position in the log (orders the versions within a transaction)
    commit_time: datetime | None = None  # its transaction's commit


@dataclass(frozen=True)
class UpsertGroup:
    """Rows that carry the same columns (those whose values the log sent), merged together."""

    columns: tuple[str, ...]
    batches: list[pa.RecordBatch]


@dataclass(frozen=True)
class TableLogChanges:
    """What a cycle applies to one mirror table, in this order: truncate, deletes, upserts."""

    truncated: bool
    identity: tuple[str, ...]  # the replica identity columns the deleted keys are given in
    deleted_keys: list[pa.RecordBatch]
    upserts: list[UpsertGroup]
    changes_read: int

    @property
    def rows(self) -> int:
        return sum(batch.num_rows for group in self.upserts for batch in group.batches)


def collapse(plan: TablePlan, identity: Sequence[str], changes: Iterable[LoggedChange]) -> TableLogChanges:
    """The changes (in LSN order) reduced to one upsert per merge key and one delete per identity."""
    key, identity = plan.merge_key, tuple(identity)
    upserts: dict[tuple[Value, ...], RowValues] = {}
    upsert_by_identity: dict[tuple[Value, ...], tuple[Value, ...]] = {}
    deletes: dict[tuple[Value, ...], RowValues] = {}
    truncated, read = False, 0
    for change in changes:
        read += 1
        if change.kind == "truncate":
            upserts.clear()
            upsert_by_identity.clear()
            deletes.clear()
            truncated = True
            continue
        row_identity = tuple(change.values.get(name) for name in identity)
        if change.kind == "delete":
            deletes[row_identity] = change.values
            merge_key = upsert_by_identity.pop(row_identity, None)
            if merge_key is not None:
                upserts.pop(merge_key, None)
            continue
        values = {name: change.values[name] for name in plan.column_names if name in change.values}
        merge_key = tuple(values.get(name) for name in key)
        if UNCHANGED_TOAST in merge_key or UNCHANGED_TOAST in row_identity:
            raise SourceError(f"The log sent a row of {plan.name} without its key (an unchanged TOASTed key column): "
                              "resync the table with `cdc-sync resync --table`.")
        earlier = upserts.get(merge_key)
        if earlier is not None:
            values = {name: earlier.get(name, value) if value is UNCHANGED_TOAST else value
                      for name, value in values.items()}
        upserts[merge_key] = values
        upsert_by_identity[row_identity] = merge_key
    return TableLogChanges(truncated, identity, _batches(plan, identity, list(deletes.values())),
                           _upsert_groups(plan, upserts.values()), read)


def collapse_in_segments(plan: TablePlan, identity: Sequence[str],
                         changes: Iterable[LoggedChange]) -> Iterator[TableLogChanges]:
    """The changes collapsed :data:`SEGMENT_CHANGES` at a time: applied in order, the segments leave the mirror as
    one collapse of them all would, and memory holds one segment however many changes there are."""
    changes = iter(changes)
    while True:
        segment = collapse(plan, identity, islice(changes, SEGMENT_CHANGES))
        if not segment.changes_read:
            return
        yield segment


def _upsert_groups(plan: TablePlan, rows: Iterable[RowValues]) -> list[UpsertGroup]:
    grouped: dict[tuple[str, ...], list[RowValues]] = {}
    for row in rows:
        columns = tuple(name for name in plan.column_names if name in row and row[name] is not UNCHANGED_TOAST)
        grouped.setdefault(columns, []).append(row)
    return [UpsertGroup(columns, _batches(plan, columns, group)) for columns, group in grouped.items()]


def _batches(plan: TablePlan, columns: tuple[str, ...], rows: list[RowValues]) -> list[pa.RecordBatch]:
    """Rows of text values as Arrow batches of the plan's types, parsed as the query mode parses COPY's CSV (both
    are the types' text output). The text columns are built in Arrow and written as CSV by Arrow (NULL an unquoted
    empty field, every value quoted), so no Python string is made per value."""
    if not rows:
        return []
    try:
        table = pa.table([pa.array([row.get(name) for row in rows], pa.string()) for name in columns],
                         names=[f"c{index}" for index in range(len(columns))])
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        raise SourceError("The log sent a value in binary form: the slot must decode with pgoutput's text format.") \
            from None
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink, _CSV_WRITE)
    return list(csv_batches([sink.getvalue()], tuple(plan.table.column(name) for name in columns)))


_CSV_WRITE = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
