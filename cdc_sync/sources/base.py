"""The contract every source engine fulfils: introspect, measure the commit horizon, stream batches."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from cdc_sync import key_digest
from cdc_sync.key_digest import KeyDigest
from cdc_sync.types import TableSchema


def quote(identifier: str) -> str:
    """An identifier in double quotes, the SQL standard's form (PostgreSQL, SQLite); MySQL quotes its own."""
    return '"' + identifier.replace('"', '""') + '"'


def reach_probe_sql(quote: Callable[[str], str], table: str, key: tuple[str, ...], column: str) -> str:
    """``SELECT EXISTS`` of a row whose ``key`` columns equal the first ``%s`` parameters and whose ``column`` is at
    or after the last one: the source-reset check's probe, by key (an index lookup) or, with no key, a scan."""
    conditions = [f"{quote(name)} = %s" for name in key] + [f"{quote(column)} >= %s"]
    return f"SELECT EXISTS (SELECT 1 FROM {quote(table)} WHERE {' AND '.join(conditions)})"


def key_digest_sql(quote: Callable[[str], str], table: str, key: tuple[str, ...], as_text: str,
                   hex_to_integer: str, concatenate: Callable[[list[str]], str] = " || ".join,
                   placeholder: str = "%s") -> str:
    """The row count and key digest of a source table (:mod:`cdc_sync.key_digest`), in the form every warehouse
    dialect renders too: each key part cast to text by ``as_text`` (a template), parts and bound separators joined
    by ``concatenate``, MD5, two hex slices summed. ``hex_to_integer`` turns eight hex digits into an unsigned
    integer."""
    parts: list[str] = []
    for index, name in enumerate(key):
        if index:
            parts.append(placeholder)  # the separator
        parts.append(f"COALESCE({as_text.format(quote(name))}, {placeholder})")
    high, low = hex_to_integer.format("SUBSTR(h, 1, 8)"), hex_to_integer.format("SUBSTR(h, 9, 8)")
    return (f"SELECT COUNT(*), COALESCE(SUM({high}), 0), COALESCE(SUM({low}), 0) "
            f"FROM (SELECT MD5({concatenate(parts)}) AS h FROM {quote(table)}) AS rendered_keys")


@dataclass(frozen=True)
class SeenRowVersions:
    """The writes a snapshot saw, as PostgreSQL's ``pg_snapshot``: every transaction before ``xmin``, and those
    before ``xmax`` that are not ``in_progress``. A row version written by any other transaction is new to it.

    Kept in the watermark as PostgreSQL's own text form, ``xmin:xmax:xip,…`` (64-bit transaction ids). A bare
    number (the form earlier versions stored) means "everything from that transaction on is new", which re-reads
    more rows but misses none."""

    xmin: int
    xmax: int
    in_progress: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> SeenRowVersions:
        parts = text.strip().split(":")
        if len(parts) == 1:
            return cls(int(parts[0]), int(parts[0]))
        xmin, xmax, in_progress = parts
        return cls(int(xmin), int(xmax), tuple(int(xid) for xid in in_progress.split(",") if xid))

    def with_subtransactions(self, still_in_progress: set[int] | None) -> SeenRowVersions:
        """This snapshot with the subtransactions of its in-progress transactions counted as in progress too.

        PostgreSQL lists only top-level ids as in progress. A row written in a savepoint carries the savepoint's
        own id, which lies between its parent's id and ``xmax``. Unlisted, it would look committed before the read,
        and once the parent commits every later read would skip the row for good.

        ``still_in_progress``: the ids from ``xmin`` to ``xmax`` still in progress when checked, just after the
        snapshot was taken (subtransactions included), or None when the range was not checked. An id in progress
        then was in progress at the snapshot, since ids assigned later are at least ``xmax``. A listed transaction
        that had already ended by the check may have had subtransactions that ended with it; so may every listed
        transaction when nothing was checked. Every id after such a transaction's counts as unseen (``xmax`` moves
        down to it): the next read takes a few rows again and misses none.
        """
        if not self.in_progress:
            return self
        xmax = self.xmax
        for top in sorted(self.in_progress):
            if still_in_progress is None or top not in still_in_progress:
                xmax = top + 1
                break
        unseen = set(self.in_progress) | (still_in_progress or set())
        return SeenRowVersions(self.xmin, xmax, tuple(sorted(xid for xid in unseen if xid < xmax)))

    def __str__(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(str(xid) for xid in self.in_progress)}"


@dataclass(frozen=True)
class Horizon:
    """When a read started, and the start of the oldest write transaction still open then.

    Rows stamped before ``oldest_open_write_at`` may still commit later with that old stamp; rows stamped after
    ``read_started_at`` were not visible to the read. A timestamp watermark may therefore advance no further than
    :attr:`safe_until`.
    """

    read_started_at: datetime
    oldest_open_write_at: datetime | None
    # False when the engine could not tell us about other sessions (missing privilege, or no such view).
    sees_open_writes: bool
    # Engines with row versions (PostgreSQL): the writes this read sees; the next read of the table takes only
    # rows written by the others. None where the engine has no such notion.
    row_version: SeenRowVersions | None = None
    # Engines whose statistics count deleted rows (PostgreSQL): that count per table, taken with the snapshot.
    # None where the engine keeps no such count, or does not keep it now (track_counts off).
    deletes_recorded: Mapping[str, int] | None = None
    # Engines with one writer at a time (SQLite): a transaction's ids commit before another transaction can take
    # one, so no id below one already committed can commit later, whatever the horizon could not see.
    ids_commit_in_order: bool = False
    # A moment at or after the snapshot was taken (``read_started_at`` may precede it). A write transaction that
    # began later took its ids after the snapshot, so they are larger than every id the read saw; one that began
    # earlier may hold a smaller id it has not committed. None: use ``read_started_at`` (engines without open
    # writers to compare, or where the horizon is measured once the snapshot is open).
    snapshot_taken_by: datetime | None = None
    # Engines whose view of open writers lags (MySQL's and MariaDB's INNODB_TRX is a cache refreshed at most every
    # 0.1 s): every writer that began before this moment is in ``oldest_open_write_at``, one that began later may be
    # missing. None: the view is exact when the horizon is read.
    open_writes_seen_until: datetime | None = None
    # A writer in progress at the snapshot ended before the writers were read (PostgreSQL reads them after taking
    # the snapshot): its rows are not in the read, and it is not in ``oldest_open_write_at`` either.
    writer_missed: bool = False

    @property
    def writers_compared_from(self) -> datetime:
        """Writers that began after this moment hold only ids above those the read saw."""
        return self.snapshot_taken_by or self.read_started_at

    @property
    def writers_seen_until(self) -> datetime:
        """Every write transaction that began before this moment is known to this horizon."""
        return self.open_writes_seen_until or self.read_started_at

    @property
    def safe_until(self) -> datetime:
        if self.oldest_open_write_at is None:
            return self.writers_seen_until
        return min(self.writers_seen_until, self.oldest_open_write_at)

    @property
    def writes_were_open(self) -> bool:
        return self.oldest_open_write_at is not None or not self.sees_open_writes


@dataclass(frozen=True)
class CursorFilter:
    """Rows whose ``column`` is strictly greater than ``after`` (closed start: ``after`` itself was read)."""

    column: str
    after: Any
    # Where the engine has row versions: only rows written by a transaction the last read could not see
    # (the overlap then costs no re-read of rows already mirrored).
    since_row_version: SeenRowVersions | None = None


@dataclass(frozen=True)
class RowVersionFilter:
    """Rows written by a transaction that ``since`` did not see (a change detector that needs no column)."""

    since: SeenRowVersions


RowFilter = CursorFilter | RowVersionFilter


class SourceSnapshot(ABC):
    """A consistent, read-only view of the source: every read inside it sees the same committed state."""

    horizon: Horizon

    @abstractmethod
    def read_rows(
        self, table: TableSchema, where: RowFilter | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Stream the table's rows (only ``table.columns``) in bounded batches typed by :mod:`cdc_sync.types`."""

    @abstractmethod
    def read_keys(self, table: TableSchema, key: tuple[str, ...]) -> Iterator[pa.RecordBatch]:
        """Stream only the key columns: the cheap scan behind delete detection."""

    @abstractmethod
    def count_rows(self, table: TableSchema) -> int:
        """The table's row count in this snapshot."""

    def estimate_rows(self, table: TableSchema) -> int | None:
        """About how many rows the table holds, cheaply (the engine's statistics), for a progress bar's total; None
        where the engine keeps no estimate or has none yet."""
        return None

    def key_digest(self, table: TableSchema, key: tuple[str, ...]) -> KeyDigest | None:
        """The table's row count and key digest in this snapshot (:mod:`cdc_sync.key_digest`), or None where the
        engine or the key's types cannot render it as the warehouse does."""
        return None

    @staticmethod
    def renders_key(table: TableSchema, key: tuple[str, ...]) -> bool:
        return bool(key) and key_digest.renderable([table.column(name).logical_type for name in key])

    def row_reaches(self, table: TableSchema, key: tuple[str, ...], values: tuple[Any, ...], column: str,
                    value: Any) -> bool:
        """Whether the row with these ``key`` values exists with ``column`` at or after ``value``: the cheap first
        look of the source-reset check. Engines without such a lookup answer False, and the caller asks
        :meth:`reaches` instead."""
        return False

    def reads_only_rewritten_rows(self, where: RowFilter | None) -> bool:
        """Whether ``read_rows(…, where)`` returns only rows written since the previous read's snapshot began.

        Then a MERGE need not compare a matched row's columns to skip unchanged ones: comparing makes the warehouse
        read every column of the whole mirror table, while the few rows re-read at the snapshot boundary are
        rewritten with the same values, harmlessly."""
        return False

    def reaches(self, table: TableSchema, column: str, value: Any) -> bool:
        """Whether some row's ``column`` is at or after ``value`` (the source-reset check).

        This generic form streams the matching cursor values; engines override it with a query that stops at the
        first match and sends no rows.
        """
        only_cursor = TableSchema(table.name, (table.column(column),))
        before = value - (timedelta(microseconds=1) if isinstance(value, datetime) else 1)
        return any(batch.num_rows for batch in self.read_rows(only_cursor, CursorFilter(column, before)))


class Source(ABC):
    """One connection to an Airflow metadata database."""

    engine: str
    # Whether read_rows accepts a RowVersionFilter (PostgreSQL's xmin).
    has_row_versions: bool = False
    # What to grant when the horizon cannot see other sessions' writes; None where the engine never can.
    open_writes_hint: str | None = None
    # How to point the source at Airflow's tables when they were not found where it looked.
    other_schema_hint: str = ""

    @abstractmethod
    def list_tables(self) -> list[str]:
        """Every base table in the Airflow schema."""

    @abstractmethod
    def describe(self, table: str) -> TableSchema:
        """Columns (as logical types), primary key and unique keys of ``table``."""

    def describe_tables(self, tables: list[str]) -> dict[str, TableSchema]:
        """:meth:`describe` for several tables; engines override it with one catalog query for all of them."""
        return {table: self.describe(table) for table in tables}

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[SourceSnapshot]:
        """Open a consistent read-only snapshot."""

    @abstractmethod
    def identity(self) -> str:
        """A stable description of which database this is (no credentials), to keep mirrors apart."""

    def location(self) -> str:
        """Where the source looks for Airflow's tables, for messages (no credentials)."""
        return self.identity()

    def replication_slot_wal(self, slot: str) -> tuple[int | None, str | None] | None:
        """The WAL the replication slot ``slot`` of this database keeps (bytes) and its ``wal_status``, or None when
        there is no such slot (or the engine has none)."""
        return None

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
