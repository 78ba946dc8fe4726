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
- An UPDATE that changes the replica identity (a new task instance UUID) deletes the old identity, then upserts.
- A TRUNCATE forgets every change before it, and empties the mirror first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa

from cdc_sync.errors import SourceError
from cdc_sync.plan import TablePlan
from cdc_sync.sources.csv_stream import csv_batches
from cdc_sync.sources.pgoutput import UNCHANGED_TOAST, Delete, Insert, Relation, Truncate, Update, Value

RowValues = dict[str, Value]


@dataclass(frozen=True)
class LoggedChange:
    """One change of a table as the log holds it: ``kind`` is upsert, delete or truncate; ``values`` maps column
    names to their text forms (for a delete, the replica identity columns only). ``lsn``, ``committed_at`` and
    ``op`` are what a history table records of it (:mod:`cdc_sync.history_log`): the change's own WAL position, its
    transaction's commit time, and insert, update, delete or truncate ("" for the delete of an old replica identity
    that an UPDATE implies: in the history, that UPDATE is one version)."""

    end_lsn: int  # the end of its transaction's commit record
    kind: str
    values: RowValues = field(default_factory=dict)
    lsn: int = 0
    committed_at: datetime | None = None
    op: str = ""


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
    # Every change, uncollapsed and in LSN order: what a history table records (cdc_sync.history_log).
    versions: tuple[LoggedChange, ...] = ()

    @property
    def rows(self) -> int:
        return sum(batch.num_rows for group in self.upserts for batch in group.batches)


def logged_changes(message: Insert | Update | Delete | Truncate, relation: Relation, end_lsn: int, lsn: int = 0,
                   committed_at: datetime | None = None) -> Iterator[LoggedChange]:
    """A decoded row message as the changes it makes to its table (a TRUNCATE: one per table, see
    :func:`truncated_tables`). ``lsn`` is the message's own position, ``committed_at`` its transaction's."""
    names = relation.column_names
    identity = tuple(column.name for column in relation.columns if column.is_key)
    if isinstance(message, Insert):
        yield LoggedChange(end_lsn, "upsert", dict(zip(names, message.new, strict=True)), lsn, committed_at, "insert")
    elif isinstance(message, Update):
        new = dict(zip(names, message.new, strict=True))
        if message.old is not None:
            old = dict(zip(names, message.old, strict=True))
            old_key = {name: old[name] for name in identity}
            if any(old_key[name] != new[name] for name in identity if new[name] is not UNCHANGED_TOAST):
                yield LoggedChange(end_lsn, "delete", old_key, lsn, committed_at, "")
        yield LoggedChange(end_lsn, "upsert", new, lsn, committed_at, "update")
    elif isinstance(message, Delete):
        old = dict(zip(names, message.old, strict=True))
        yield LoggedChange(end_lsn, "delete", {name: old[name] for name in identity}, lsn, committed_at, "delete")


def collapse(plan: TablePlan, identity: Sequence[str], changes: Iterable[LoggedChange]) -> TableLogChanges:
    """The changes (in LSN order) reduced to one upsert per merge key and one delete per identity."""
    key, identity, changes = plan.merge_key, tuple(identity), tuple(changes)
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
    return TableLogChanges(truncated, identity, text_batches(plan, identity, list(deletes.values())),
                           _upsert_groups(plan, upserts.values()), read, changes)


def _upsert_groups(plan: TablePlan, rows: Iterable[RowValues]) -> list[UpsertGroup]:
    grouped: dict[tuple[str, ...], list[RowValues]] = {}
    for row in rows:
        columns = tuple(name for name in plan.column_names if name in row and row[name] is not UNCHANGED_TOAST)
        grouped.setdefault(columns, []).append(row)
    return [UpsertGroup(columns, text_batches(plan, columns, group)) for columns, group in grouped.items()]


def text_batches(plan: TablePlan, columns: tuple[str, ...], rows: list[RowValues]) -> list[pa.RecordBatch]:
    """Rows of text values as Arrow batches of the plan's types, parsed as the query mode parses COPY's CSV (both
    are the types' text output)."""
    if not rows:
        return []
    lines = (",".join(_csv_field(row.get(name)) for name in columns).encode() + b"\n" for row in rows)
    return list(csv_batches(lines, tuple(plan.table.column(name) for name in columns)))


def _csv_field(value: Value) -> str:
    """NULL as an unquoted empty field, every value quoted (so an empty string stays one)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SourceError("The log sent a value in binary form: the slot must decode with pgoutput's text format.")
    return '"' + value.replace('"', '""') + '"'
