"""A cycle's decoded log, table by table, spooled to local disk as it is read, so that memory does not follow the
changes: a transaction larger than a cycle (an ``airflow db clean``, a mass clear) is written to the spool in
batches of :data:`SPOOL_BATCH_ROWS` rows and read back one batch at a time.

Every version the log sent is kept, in the order the slot gave them (commit order, then change order within a
transaction), with the LSN of its message and its transaction's commit. :meth:`ChangeSpool.batches` gives them as
Arrow batches, which a cycle collapses to the last version per key without a Python object per value
(:mod:`cdc_sync.log_changes`); :meth:`ChangeSpool.versions` gives them one by one as :class:`LoggedChange`, with
their commit's LSN and time, for a history of every version.

Rows are spooled as soon as they are decoded, before their transaction's commit is read: each row carries the
number of its transaction, and the commit's end LSN and time are looked up by that number when the row is read
back (:class:`_Commits` holds three integers per transaction, not per row). The spool's ``__cdc_transaction`` is
that number, the transaction's position in the peek; its PostgreSQL id is kept in :class:`_Commits` too, so that a
table's reads can leave out the transactions its last read through the query path saw already (``seen``).
"""

from __future__ import annotations

import shutil
import tempfile
from array import array
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any

import pyarrow as pa

from cdc_sync.arrow_kernels import call, is_in
from cdc_sync.errors import CdcSyncError, SourceError
from cdc_sync.sources.base import SeenRowVersions
from cdc_sync.sources.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    Commit,
    Delete,
    Insert,
    Relation,
    Truncate,
    Update,
    Value,
)

# Rows a table's spool holds in memory before they are written out as one Arrow batch.
SPOOL_BATCH_ROWS = 10_000
# Free space the spool leaves on its disk (TMPDIR's): a cycle stops rather than fill it.
MIB = 1 << 20
SPOOL_MIN_FREE_BYTES = 256 * MIB
# What each spooled row is, as the log said it: INSERT and UPDATE are upserts; DELETE and IDENTITY_DELETE (the old
# replica identity an UPDATE changed, e.g. a task instance's new UUID) are deletes.
INSERT, UPDATE, DELETE, IDENTITY_DELETE, TRUNCATE = range(5)
UPSERTS, DELETES = (INSERT, UPDATE), (DELETE, IDENTITY_DELETE)
KINDS = ("upsert", "upsert", "delete", "delete", "truncate")  # LoggedChange.kind, by code
OPERATIONS = ("insert", "update", "delete", "", "truncate")  # LoggedChange.op, by code
# The spool's own columns, after the table's text columns (names no Airflow column takes): the kind of change, its
# transaction's number, its message's LSN, and the indexes of the columns the log did not send ("3,7"; NULL: none).
KIND, TRANSACTION, LSN, UNSENT = META_COLUMNS = ("__cdc_kind", "__cdc_transaction", "__cdc_lsn", "__cdc_unsent")


@dataclass(frozen=True)
class LoggedChange:
    """One version of a row as the log holds it: ``kind`` is upsert, delete or truncate; ``values`` maps column
    names to their text forms (an unsent one: UNCHANGED_TOAST; for a delete, the replica identity columns only).
    ``op`` is the statement that made it: insert, update, delete or truncate, and "" for the delete of an old replica
    identity that an UPDATE implies (in a history of versions, that UPDATE is one version)."""

    end_lsn: int  # the end of its transaction's commit record
    kind: str
    values: dict[str, Value] = field(default_factory=dict)
    lsn: int = 0  # its own message's position in the log (orders the versions within a transaction)
    committed_at: datetime | None = None  # its transaction's commit
    op: str = ""


class _Commits:
    """Each transaction's commit, by its number in the peek: the end of its commit record, its time, and its
    PostgreSQL transaction id (32 bits, as the slot gives it)."""

    def __init__(self) -> None:
        self.ends = array("Q")
        self.times = array("q")  # microseconds since the Unix epoch
        self.xids = array("Q")

    def begin(self, xid: int) -> int:
        self.ends.append(0)  # 0 until its commit is read: a transaction the peek did not finish is never applied
        self.times.append(0)
        self.xids.append(xid)
        return len(self.ends) - 1

    def commit(self, number: int, message: Commit) -> None:
        self.ends[number] = message.end_lsn
        self.times[number] = (message.commit_time - _UNIX_EPOCH) // _MICROSECOND

    def arrays(self) -> tuple[pa.Array, pa.Array, pa.Array]:
        return (pa.array(self.ends, pa.uint64()), pa.array(self.times, pa.timestamp("us", tz="UTC")),
                pa.array(self.xids, pa.int64()))


class TableSpool:
    """One table's versions: rows of the table's text values (in ``columns``' order), plus what kind of change each
    is, its transaction, its message's LSN, and the columns the log did not send (an unchanged TOASTed value, or a
    column the table did not have then)."""

    def __init__(self, name: str, columns: tuple[str, ...], path: Path) -> None:
        self.name = name
        self.columns = columns
        self.path = path
        self.identity: tuple[str, ...] = ()  # the replica identity, from the newest Relation message
        self.rows = 0
        self._layouts: dict[int, tuple[tuple[int, ...], str | None]] = {}  # relation id → positions, unsent
        self.key_positions: dict[int, tuple[int, ...]] = {}  # relation id → positions of the identity's columns
        self._layout: tuple[tuple[int, ...], str | None] | None = None  # the buffered rows' layout
        self._buffer: list[tuple[Any, ...]] = []
        self._meta: list[tuple[int, int, int, str | None]] = []
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._schema = pa.schema([*(pa.field(column, pa.string()) for column in columns), pa.field(KIND, pa.int8()),
                                  pa.field(TRANSACTION, pa.int64()), pa.field(LSN, pa.uint64()),
                                  pa.field(UNSENT, pa.string())])

    def relation(self, relation: Relation) -> None:
        """Rows that follow are encoded in ``relation``'s columns (a table's shape can change mid-stream)."""
        positions = {column.name: index for index, column in enumerate(relation.columns)}
        layout = tuple(positions.get(column, -1) for column in self.columns)
        absent = [str(index) for index, position in enumerate(layout) if position < 0]
        self._layouts[relation.relation_id] = (layout, ",".join(absent) or None)
        self.identity = tuple(column.name for column in relation.columns if column.is_key)
        self.key_positions[relation.relation_id] = tuple(
            index for index, column in enumerate(relation.columns) if column.is_key)

    def add(self, relation_id: int, kind: int, transaction: int, lsn: int, values: tuple[Any, ...]) -> None:
        layout = self._layouts[relation_id]
        if layout is not self._layout and self._buffer:
            self.flush()
        self._layout = layout
        unsent = layout[1]
        if UNCHANGED_TOAST in values:
            unchanged = {position for position, value in enumerate(values) if value is UNCHANGED_TOAST}
            unsent = ",".join(str(index) for index, position in enumerate(layout[0])
                              if position < 0 or position in unchanged)
            values = tuple(None if value is UNCHANGED_TOAST else value for value in values)
        self._buffer.append(values)
        self._meta.append((kind, transaction, lsn, unsent))
        if len(self._buffer) >= SPOOL_BATCH_ROWS:
            self.flush()

    def truncate(self, transaction: int, lsn: int) -> None:
        if self._buffer:
            self.flush()
        self._layout = ((-1,) * len(self.columns), None)
        self._buffer.append(())
        self._meta.append((TRUNCATE, transaction, lsn, None))

    def flush(self) -> None:
        """The buffered rows, as one Arrow batch, onto the spool file."""
        if not self._buffer:
            return
        assert self._layout is not None
        count = len(self._buffer)
        by_position = list(zip(*self._buffer, strict=True)) if self._buffer[0] else []
        arrays = [_text_array(by_position[position], self.name) if position >= 0 else pa.nulls(count, pa.string())
                  for position in self._layout[0]]
        kinds, transactions, lsns, unsent = zip(*self._meta, strict=True)
        arrays += [pa.array(kinds, pa.int8()), pa.array(transactions, pa.int64()), pa.array(lsns, pa.uint64()),
                   pa.array(unsent, pa.string())]
        _require_free_space(self.path.parent)
        if self._writer is None:
            self._writer = pa.ipc.new_stream(str(self.path), self._schema)
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self._schema))
        self.rows += count
        self._buffer, self._meta = [], []

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        if not self.rows:
            return
        with pa.ipc.open_stream(pa.memory_map(str(self.path))) as reader:
            yield from reader


class ChangeSpool:
    """The whole peek, spooled per table into a directory of its own (removed by :meth:`close`)."""

    def __init__(self, tables: dict[str, tuple[str, ...]]) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="cdc_sync_log_")
        self.tables = {name: TableSpool(name, columns, Path(self._directory.name) / f"{index}.arrows")
                       for index, (name, columns) in enumerate(tables.items())}
        self._commits = _Commits()
        self._commit_arrays: tuple[pa.Array, pa.Array, pa.Array] | None = None
        self.last_commit = 0  # the end of the last commit read (0: none)

    def read(self, messages: Iterable[Any]) -> ChangeSpool:
        """Spool every row message of the tables, in the order they come (``messages``: the peek's, each with
        ``lsn`` and ``message``)."""
        tables = self.tables
        by_relation: dict[int, TableSpool | None] = {}
        transaction = -1
        for item in messages:
            message = item.message
            if isinstance(message, Update):
                spool = by_relation[message.relation_id]
                if spool is not None:
                    if message.old is not None and _identity_changed(spool, message):
                        spool.add(message.relation_id, IDENTITY_DELETE, transaction, item.lsn, message.old)
                    spool.add(message.relation_id, UPDATE, transaction, item.lsn, message.new)
            elif isinstance(message, Insert):
                spool = by_relation[message.relation_id]
                if spool is not None:
                    spool.add(message.relation_id, INSERT, transaction, item.lsn, message.new)
            elif isinstance(message, Delete):
                spool = by_relation[message.relation_id]
                if spool is not None:
                    spool.add(message.relation_id, DELETE, transaction, item.lsn, message.old)
            elif isinstance(message, Begin):
                transaction = self._commits.begin(message.xid)
            elif isinstance(message, Commit):
                self._commits.commit(transaction, message)
                self.last_commit = message.end_lsn
            elif isinstance(message, Relation):
                spool = tables.get(message.name)
                by_relation[message.relation_id] = spool
                if spool is not None:
                    spool.relation(message)
            elif isinstance(message, Truncate):
                for relation_id in message.relation_ids:
                    spool = by_relation[relation_id]
                    if spool is not None:
                        spool.truncate(transaction, item.lsn)
        for spool in tables.values():
            spool.close()
        self._commit_arrays = self._commits.arrays()
        return self

    def identity(self, table: str) -> tuple[str, ...]:
        spool = self.tables.get(table)
        return () if spool is None else spool.identity

    def batches(self, table: str, after: int, seen: SeenRowVersions | None = None) -> Iterator[pa.RecordBatch]:
        """The spooled rows of ``table`` committed after the LSN ``after``, in the log's order: the table's text
        columns, then :data:`META_COLUMNS`; one spool batch at a time. Without the rows of the transactions
        ``seen`` saw (see :func:`unseen_transactions`)."""
        for batch, _ends, _transactions in self._committed_after(table, after, seen):
            yield batch

    def versions(self, table: str, after: int, columns: Collection[str] | None = None,
                 seen: SeenRowVersions | None = None) -> Iterator[LoggedChange]:
        """Every version of ``table`` committed after the LSN ``after``, in the log's order, with its commit. An
        upsert's values hold ``columns`` (default: all), an unsent one as UNCHANGED_TOAST; a delete's, the replica
        identity's. Without the transactions ``seen`` saw, as :meth:`batches`."""
        spool = self.tables.get(table)
        if spool is None or self._commit_arrays is None:
            return
        times = self._commit_arrays[1]
        wanted = [(index, name) for index, name in enumerate(spool.columns) if columns is None or name in columns]
        identity = [(spool.columns.index(name), name) for name in spool.identity if name in spool.columns]
        for batch, ends, transactions in self._committed_after(table, after, seen):
            yield from _versions(batch, ends.to_pylist(), call("take", times, transactions).to_pylist(), wanted,
                                 identity)

    def _committed_after(self, table: str, after: int, seen: SeenRowVersions | None) \
            -> Iterator[tuple[pa.RecordBatch, pa.Array, pa.Array]]:
        spool = self.tables.get(table)
        if spool is None or self._commit_arrays is None:
            return
        ends, _times, xids = self._commit_arrays
        # Per transaction number: committed after ``after``, and not seen by the last query-path read.
        wanted = call("greater", ends, pa.scalar(after, pa.uint64()))
        if seen is not None:
            wanted = call("and", wanted, unseen_transactions(xids, seen))
        for batch in spool.batches():
            transactions = batch.column(TRANSACTION)
            batch_ends = call("take", ends, transactions)
            kept = call("take", wanted, transactions)
            if not call("any", kept).as_py():
                continue
            if not call("all", kept).as_py():
                batch, batch_ends, transactions = (call("filter", batch, kept), call("filter", batch_ends, kept),
                                                   call("filter", transactions, kept))
            yield batch, batch_ends, transactions

    def close(self) -> None:
        for spool in self.tables.values():
            spool.close()
        self._directory.cleanup()


class SpoolDiskFull(CdcSyncError):
    """The disk under the log spool is nearly full."""


def _require_free_space(directory: Path) -> None:
    """Refuse to fill the disk the spool is on: the cycle stops before it writes anything, and the slot keeps the
    changes for the next cycle (nothing is lost)."""
    free = shutil.disk_usage(directory).free
    if free < SPOOL_MIN_FREE_BYTES:
        raise SpoolDiskFull(
            f"The log capture's spool directory {directory} has only {free / MIB:,.0f} MiB free (it keeps "
            f"{SPOOL_MIN_FREE_BYTES / MIB:,.0f} MiB free), so this cycle stopped before writing anything; the slot "
            "keeps the changes. Point TMPDIR at a larger disk, or run cycles more often."
        )


def unseen_transactions(xids: pa.Array, seen: SeenRowVersions) -> pa.Array:
    """For each committed transaction id (32 bits, as the slot gives them), whether the snapshot ``seen`` (64-bit
    ids) did not see it: a table's last read through the query path holds what it saw already, and applying those
    changes again could undo what a later rewrite by DDL did, which the log does not carry (an Airflow upgrade's
    ALTER TABLE). Each id is read as the 64-bit id nearest to the snapshot's ``xmax``."""
    half, wrap = 1 << 31, 1 << 32

    def int64(value: int) -> pa.Scalar:
        return pa.scalar(value, pa.int64())

    full = call("bit_wise_or", int64(seen.xmax & ~0xFFFFFFFF), call("bit_wise_and", xids, int64(0xFFFFFFFF)))
    full = call("if_else", call("greater", full, int64(seen.xmax + half)), call("subtract", full, int64(wrap)),
                call("if_else", call("less", full, int64(seen.xmax - half)), call("add", full, int64(wrap)), full))
    saw = call("and", call("and", call("greater_equal", full, int64(3)), call("less", full, int64(seen.xmax))),
               call("invert", is_in(full, pa.array(seen.in_progress, pa.int64()))))
    return call("invert", saw)


def _versions(batch: pa.RecordBatch, ends: list[int], times: list[Any], wanted: list[tuple[int, str]],
              identity: list[tuple[int, str]]) -> Iterator[LoggedChange]:
    names = batch.schema.names
    wanted_names = tuple(name for _, name in wanted)
    rows = zip(*(batch.column(index).to_pylist() for index, _ in wanted), strict=True) if wanted else None
    identity_rows = (zip(*(batch.column(index).to_pylist() for index, _ in identity), strict=True) if identity
                     else repeat(()))
    identity_names = tuple(name for _, name in identity)
    kinds = batch.column(KIND).to_pylist()
    lsns = batch.column(LSN).to_pylist()
    unsent_lists = batch.column(UNSENT).to_pylist()
    for row, (kind, identity_values) in enumerate(zip(kinds, identity_rows, strict=True)):
        row_values = dict(zip(wanted_names, next(rows), strict=True)) if rows is not None else {}
        if kind in UPSERTS:
            unsent = unsent_lists[row]
            if unsent is not None:
                for index in map(int, unsent.split(",")):
                    if names[index] in row_values:
                        row_values[names[index]] = UNCHANGED_TOAST
        elif kind in DELETES:
            row_values = dict(zip(identity_names, identity_values, strict=True))
        else:
            row_values = {}
        yield LoggedChange(ends[row], KINDS[kind], row_values, lsns[row], times[row], OPERATIONS[kind])


def _identity_changed(spool: TableSpool, message: Update) -> bool:
    """An UPDATE that sent its old key changed the replica identity (Airflow 3: a task instance's new UUID): the old
    identity is deleted before the new version is written."""
    old, new = message.old, message.new
    assert old is not None
    return any(new[position] is not UNCHANGED_TOAST and old[position] != new[position]
               for position in spool.key_positions[message.relation_id])


def _text_array(values: tuple[Any, ...], table: str) -> pa.Array:
    try:
        return pa.array(values, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        raise SourceError(f"The log sent a value of {table} in binary form: the slot must decode with pgoutput's "
                          "text format.") from None


_MICROSECOND = timedelta(microseconds=1)
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
