"""One table's decoded log changes, collapsed into what a cycle applies: the rows to upsert (the last version of
each merge key, in LSN order), the replica-identity keys to delete, and whether the table was truncated.

Rules that keep the mirror exact:

- An unchanged TOASTed value (pgoutput's ``u``) is not NULL: the mirror keeps what it has. Rows are grouped by their
  set of unchanged columns, and each group is merged with only the columns it carries, so the MERGE never touches
  the others. An earlier version of the same row within the segment supplies the value when it has one.
- Under REPLICA IDENTITY DEFAULT a DELETE carries only the primary key, which need not be the mirror's merge key
  (Airflow 3's task_instance has a UUID ``id`` and the natural merge key dag_id, task_id, run_id, map_index). Deletes
  are therefore resolved through the mirror's own copy of the replica identity columns, and applied before the
  upserts: a row deleted and written again within the batch ends up written.
- An UPDATE that changes the replica identity (a new task instance UUID) deletes the old identity, then upserts
  (the spool, :mod:`cdc_sync.log_spool`, records it as those two changes).
- A TRUNCATE forgets every change before it, and empties the mirror first.
- A table's changes are collapsed :data:`SEGMENT_CHANGES` at a time (:func:`collapse_in_segments`): each segment is
  applied before the next, so the rules above hold across segments as within one.

The changes come as the spool's Arrow batches (:mod:`cdc_sync.log_spool`): only the key, identity and bookkeeping
columns are read into Python; the surviving rows are taken from the batches by index, and their text is parsed into
the plan's types by Arrow, as the query mode parses COPY's CSV.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat

import pyarrow as pa
import pyarrow.csv as pa_csv

from cdc_sync.arrow_kernels import call
from cdc_sync.errors import SourceError
from cdc_sync.log_spool import DELETES, KIND, TRUNCATE, UNSENT
from cdc_sync.plan import TablePlan
from cdc_sync.sources.csv_stream import csv_batches
from cdc_sync.sources.pgoutput import Value

# Changes collapsed and applied at a time: bounds a cycle's memory when one table changed more.
SEGMENT_CHANGES = 100_000


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


def collapse_in_segments(plan: TablePlan, identity: Sequence[str],
                         batches: Iterable[pa.RecordBatch]) -> Iterator[TableLogChanges]:
    """The spooled changes (in LSN order) collapsed about :data:`SEGMENT_CHANGES` at a time (whole spool batches):
    applied in order, the segments leave the mirror as one collapse of them all would, and memory holds one segment
    however many changes there are."""
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        if rows >= SEGMENT_CHANGES:
            yield collapse(plan, identity, pa.Table.from_batches(pending))
            pending, rows = [], 0
    if pending:
        yield collapse(plan, identity, pa.Table.from_batches(pending))


def collapse(plan: TablePlan, identity: Sequence[str], changes: pa.Table) -> TableLogChanges:
    """Spooled changes (in LSN order) reduced to one upsert per merge key and one delete per identity. Rows are
    tracked by their index in ``changes``; only the columns that key them are read into Python."""
    identity = tuple(identity)
    names = plan.column_names
    kinds = changes.column(KIND).to_pylist()
    unsent_lists = changes.column(UNSENT).to_pylist()
    merge_keys = zip(*(changes.column(name).to_pylist() for name in plan.merge_key), strict=True)
    identities = (zip(*(changes.column(name).to_pylist() for name in identity), strict=True) if identity
                  else repeat(()))
    upserts: dict[tuple[Value, ...], int] = {}  # merge key → the index of its last version
    upsert_by_identity: dict[tuple[Value, ...], tuple[Value, ...]] = {}
    deletes: dict[tuple[Value, ...], int] = {}  # identity → the index of its delete
    unsent_of: dict[int, frozenset[str]] = {}  # index → the columns its upsert leaves as the mirror has them
    filled: dict[int, dict[str, Value]] = {}  # index → values an earlier version supplied for its unsent columns
    truncated = False
    guarded = frozenset(plan.merge_key) | frozenset(identity)
    for index, (kind, merge_key, row_identity) in enumerate(zip(kinds, merge_keys, identities, strict=False)):
        if kind == TRUNCATE:
            upserts.clear()
            upsert_by_identity.clear()
            deletes.clear()
            truncated = True
        elif kind in DELETES:
            deletes[row_identity] = index
            earlier_key = upsert_by_identity.pop(row_identity, None)
            if earlier_key is not None:
                upserts.pop(earlier_key, None)
        else:
            earlier = upserts.get(merge_key)
            unsent_text = unsent_lists[index]
            if unsent_text is not None:
                unsent = {names[int(position)] for position in unsent_text.split(",")}
                if unsent & guarded:
                    raise SourceError(f"The log sent a row of {plan.name} without its key (an unchanged TOASTed key "
                                      "column): resync the table with `cdc-sync resync --table`.")
                if earlier is not None:
                    supplied = _earlier_values(changes, earlier, unsent, unsent_of, filled)
                    if supplied:
                        filled[index] = supplied
                        unsent -= supplied.keys()
                if unsent:
                    unsent_of[index] = frozenset(unsent)
            upserts[merge_key] = index
            upsert_by_identity[row_identity] = merge_key
    return TableLogChanges(truncated, identity, _typed(plan, identity, changes, list(deletes.values())),
                           _upsert_groups(plan, changes, upserts.values(), unsent_of, filled), len(kinds))


def _earlier_values(changes: pa.Table, earlier: int, unsent: set[str], unsent_of: dict[int, frozenset[str]],
                    filled: dict[int, dict[str, Value]]) -> dict[str, Value]:
    """The values an earlier version of the row has for columns a later one did not send (rare: a TOASTed value
    written, then another column updated, within one segment)."""
    supplied = dict(filled.get(earlier, {}))
    for name in unsent - unsent_of.get(earlier, frozenset()) - supplied.keys():
        supplied[name] = changes.column(name)[earlier].as_py()
    return {name: value for name, value in supplied.items() if name in unsent}


def _upsert_groups(plan: TablePlan, changes: pa.Table, indexes: Iterable[int], unsent_of: dict[int, frozenset[str]],
                   filled: dict[int, dict[str, Value]]) -> list[UpsertGroup]:
    names = plan.column_names
    grouped: dict[frozenset[str], list[int]] = {}
    for index in indexes:
        grouped.setdefault(unsent_of.get(index, frozenset()), []).append(index)
    groups = []
    for unsent, group in grouped.items():
        columns = tuple(name for name in names if name not in unsent)
        groups.append(UpsertGroup(columns, _typed(plan, columns, changes, group, filled)))
    return groups


def _typed(plan: TablePlan, columns: tuple[str, ...], changes: pa.Table, indexes: list[int],
           filled: dict[int, dict[str, Value]] | None = None) -> list[pa.RecordBatch]:
    """The rows at ``indexes``, text values, as Arrow batches of the plan's types, parsed as the query mode parses
    COPY's CSV (both are the types' text output): Arrow writes the text as CSV (NULL an unquoted empty field, every
    value quoted) and parses it back, with no Python object per value."""
    if not indexes:
        return []
    rows = call("take", changes.select(list(columns)), pa.array(indexes, pa.int64()))
    patches = [(position, filled[index]) for position, index in enumerate(indexes) if filled and index in filled]
    if patches:
        rows = _patched(rows, patches)
    return typed_from_text(plan, rows)


def typed_from_text(plan: TablePlan, rows: pa.Table) -> list[pa.RecordBatch]:
    """``rows`` (string columns named as the plan's, holding the log's text values) as batches of the plan's types:
    Arrow writes them as CSV (NULL an unquoted empty field, every value quoted) and parses them back as the query
    mode parses COPY's CSV, with no Python object per value."""
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(rows, sink, _CSV_WRITE)
    return list(csv_batches([sink.getvalue()], tuple(plan.table.column(name) for name in rows.column_names)))


def _patched(rows: pa.Table, patches: list[tuple[int, dict[str, Value]]]) -> pa.Table:
    for name in {name for _, values in patches for name in values if name in rows.column_names}:
        column = rows.column(name).to_pylist()
        for position, values in patches:
            if name in values:
                column[position] = values[name]
        rows = rows.set_column(rows.column_names.index(name), name, pa.array(column, pa.string()))
    return rows


_CSV_WRITE = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
