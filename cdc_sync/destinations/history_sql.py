"""The SQL of history tables (``<table>__history``, :mod:`cdc_sync.history`), as pure text over a dialect.

A history table holds the mirror's columns plus :data:`HISTORY_COLUMNS`: one row per version of a row, valid from
``_cdc_valid_from`` until ``_cdc_valid_to`` (NULL: the current version; a ``delete`` row is valid for an instant,
from and to the deletion). Statements are built from the dialect's quoting, key matching and placeholders, and use
only SQL that every dialect shares (correlated subqueries, no ``UPDATE … FROM``), so no dialect overrides them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cdc_sync.destinations.dialect import DELETED_AT, SYNCED_AT, ColumnSpec, Dialect, Statement
from cdc_sync.types import LogicalType

HISTORY_SUFFIX = "__history"
OP = "_cdc_op"
LSN = "_cdc_lsn"
COMMIT_TS = "_cdc_commit_ts"
VALID_FROM = "_cdc_valid_from"
VALID_TO = "_cdc_valid_to"
HISTORY_COLUMNS = (
    ColumnSpec(OP, LogicalType.TEXT),
    ColumnSpec(LSN, LogicalType.TEXT),
    ColumnSpec(COMMIT_TS, LogicalType.TIMESTAMP_TZ),
    ColumnSpec(VALID_FROM, LogicalType.TIMESTAMP_TZ),
    ColumnSpec(VALID_TO, LogicalType.TIMESTAMP_TZ),
    ColumnSpec(SYNCED_AT, LogicalType.TIMESTAMP_TZ),
)
META_NAMES = tuple(column.name for column in HISTORY_COLUMNS)
# A history table is ours when it carries these (no other table of a mirror's name + "__history" would).
HISTORY_MARKERS = frozenset({OP, VALID_FROM, VALID_TO})
INSERT, UPDATE, DELETE = "insert", "update", "delete"


def history_name(table: str) -> str:
    return table + HISTORY_SUFFIX


class HistorySql:
    """Statements on ``schema``'s history table of ``table``; ``key`` is the columns a version's row is known by
    (the mirror's merge key), ``nullable`` those of them that may be NULL."""

    def __init__(self, dialect: Dialect, schema: str, table: str, key: Sequence[str],
                 nullable: frozenset[str]) -> None:
        self.dialect = dialect
        self.key = tuple(key)
        self.nullable = nullable
        self.history = dialect.table(schema, history_name(table))
        self.mirror = dialect.table(schema, table)

    def _match(self, left: str, right: str, key: Sequence[str] | None = None) -> str:
        nullable = self.nullable if key is None else frozenset()
        return self.dialect._key_match(self.key if key is None else key, left, right, nullable)

    def _open(self, alias: str) -> str:
        return f"{alias}.{self.dialect.quote(VALID_TO)} IS NULL"

    def seed(self, columns: Sequence[str], synced_at: Any) -> Statement:
        """An ``insert`` version of every live mirror row that this cycle (``synced_at``) did not write, valid from
        when a cycle last wrote it: a history table made for a mirror that already holds rows starts from them."""
        q, p = self.dialect.quote, self.dialect.placeholder
        return Statement(
            f"INSERT INTO {self.history} ({self.dialect.column_list([*columns, *META_NAMES])}) "
            f"SELECT {self.dialect.column_list(columns, 'm.')}, {p}, NULL, NULL, m.{q(SYNCED_AT)}, NULL, {p} "
            f"FROM {self.mirror} AS m WHERE m.{q(DELETED_AT)} IS NULL AND m.{q(SYNCED_AT)} <> {p}",
            (INSERT, synced_at, synced_at),
        )

    # ---- the query mode: versions are the mirror rows a cycle wrote or deleted ----------------------------
    def record_written(self, columns: Sequence[str], synced_at: Any) -> Statement:
        """A version for each mirror row this cycle wrote (``_cdc_synced_at``) or soft-deleted (``_cdc_deleted_at``):
        ``update`` when its key has an open version, else ``insert``; ``delete`` for a deleted row."""
        q, p = self.dialect.quote, self.dialect.placeholder
        deleted = f"m.{q(DELETED_AT)} = {p}"
        # A row has at most one open version, so the join adds no row; _cdc_op is never NULL in a version.
        sql = (
            f"INSERT INTO {self.history} ({self.dialect.column_list([*columns, *META_NAMES])}) "
            f"SELECT {self.dialect.column_list(columns, 'm.')}, "
            f"CASE WHEN {deleted} THEN {p} WHEN o.{q(OP)} IS NOT NULL THEN {p} ELSE {p} END, NULL, NULL, {p}, "
            f"CASE WHEN {deleted} THEN {p} ELSE NULL END, {p} "
            f"FROM {self.mirror} AS m LEFT JOIN {self.history} AS o ON {self._match('o', 'm')} AND {self._open('o')} "
            f"WHERE m.{q(SYNCED_AT)} = {p} OR {deleted}"
        )
        return Statement(sql, (synced_at, DELETE, UPDATE, INSERT, synced_at, synced_at, synced_at, synced_at,
                               synced_at, synced_at))

    def close_written(self, synced_at: Any) -> Statement:
        """Close the earlier open version of each row this cycle wrote or deleted (after :meth:`record_written`,
        whose versions start at ``synced_at`` and stay open)."""
        q, p = self.dialect.quote, self.dialect.placeholder
        touched = (f"EXISTS (SELECT 1 FROM {self.mirror} AS m WHERE {self._match('m', self.history)} "
                   f"AND (m.{q(SYNCED_AT)} = {p} OR m.{q(DELETED_AT)} = {p}))")
        return Statement(
            f"UPDATE {self.history} SET {q(VALID_TO)} = {p} WHERE {q(VALID_TO)} IS NULL "
            f"AND {q(VALID_FROM)} <> {p} AND {touched}",
            (synced_at, synced_at, synced_at, synced_at),
        )

    def record_absent(self, columns: Sequence[str], synced_at: Any) -> Statement:
        """A ``delete`` version for each open version whose row has no live mirror row (hard deletes)."""
        p = self.dialect.placeholder
        return Statement(
            f"INSERT INTO {self.history} ({self.dialect.column_list([*columns, *META_NAMES])}) "
            f"SELECT {self.dialect.column_list(columns, 'o.')}, {p}, NULL, NULL, {p}, {p}, {p} "
            f"FROM {self.history} AS o WHERE {self._open('o')} AND {self._not_live('o')}",
            (DELETE, synced_at, synced_at, synced_at),
        )

    def close_absent(self, synced_at: Any) -> Statement:
        q, p = self.dialect.quote, self.dialect.placeholder
        return Statement(
            f"UPDATE {self.history} SET {q(VALID_TO)} = {p} WHERE {q(VALID_TO)} IS NULL "
            f"AND {self._not_live(self.history)}",
            (synced_at,),
        )

    def _not_live(self, alias: str) -> str:
        return (f"NOT EXISTS (SELECT 1 FROM {self.mirror} AS m WHERE {self._match('m', alias)} "
                f"AND m.{self.dialect.quote(DELETED_AT)} IS NULL)")

    # ---- the log mode: versions staged from the decoded changes -----------------------------------------
    def drop_recorded(self, staging: str, key: Sequence[str] | None = None) -> Statement:
        """Forget staged versions the history already holds: the same change (key and LSN, a replay), or one
        no newer than a version recorded since (the first copy, which already saw it)."""
        q, staged = self.dialect.quote, self.dialect.quote(staging)
        return Statement(
            f"DELETE FROM {staged} WHERE EXISTS (SELECT 1 FROM {self.history} AS h "
            f"WHERE {self._match('h', staged, key)} AND (h.{q(LSN)} = {staged}.{q(LSN)} "
            f"OR h.{q(VALID_FROM)} >= {staged}.{q(VALID_FROM)}))"
        )

    def fill_unchanged(self, staging: str, column: str, flag: str) -> Statement:
        """A value the log did not send (an unchanged TOASTed value) is the version before's: the row's open
        version in the history (recorded by an earlier segment of this cycle, or the mirror's row), else the
        mirror's, read before the changes are applied to it. PostgreSQL sends that marker only for a value that is
        not NULL, so the COALESCE never skips a real NULL."""
        q, staged = self.dialect.quote, self.dialect.quote(staging)
        return Statement(
            f"UPDATE {staged} SET {q(column)} = COALESCE((SELECT h.{q(column)} FROM {self.history} AS h "
            f"WHERE {self._match('h', staged)} AND {self._open('h')}), (SELECT m.{q(column)} FROM {self.mirror} AS m "
            f"WHERE {self._match('m', staged)})) WHERE {staged}.{q(flag)}"
        )

    def close_before(self, staging: str, key: Sequence[str] | None = None) -> Statement:
        """Close each open version at the first staged version of its row."""
        q, staged = self.dialect.quote, self.dialect.quote(staging)
        return Statement(
            f"UPDATE {self.history} SET {q(VALID_TO)} = (SELECT MIN(s.{q(VALID_FROM)}) FROM {staged} AS s "
            f"WHERE {self._match('s', self.history, key)}) WHERE {q(VALID_TO)} IS NULL "
            f"AND EXISTS (SELECT 1 FROM {staged} AS s WHERE {self._match('s', self.history, key)})"
        )

    def insert_staged(self, staging: str, columns: Sequence[str]) -> Statement:
        names = self.dialect.column_list([*columns, *META_NAMES])
        return Statement(f"INSERT INTO {self.history} ({names}) SELECT {names} FROM {self.dialect.quote(staging)}")

    def insert_deleted(self, staging: str, columns: Sequence[str], identity: Sequence[str]) -> Statement:
        """A ``delete`` version per staged deletion (known by its replica identity only), with the values of the
        row's open version."""
        return Statement(
            f"INSERT INTO {self.history} ({self.dialect.column_list([*columns, *META_NAMES])}) "
            f"SELECT {self.dialect.column_list(columns, 'h.')}, {self.dialect.column_list(META_NAMES, 'd.')} "
            f"FROM {self.dialect.quote(staging)} AS d JOIN {self.history} AS h "
            f"ON {self._match('h', 'd', identity)} AND {self._open('h')}"
        )

    def delete_all_open(self, columns: Sequence[str], lsn: str, committed_at: Any, synced_at: Any) -> Statement:
        """A ``delete`` version for every open version (a TRUNCATE read from the log)."""
        p = self.dialect.placeholder
        return Statement(
            f"INSERT INTO {self.history} ({self.dialect.column_list([*columns, *META_NAMES])}) "
            f"SELECT {self.dialect.column_list(columns, 'o.')}, {p}, {p}, {p}, {p}, {p}, {p} "
            f"FROM {self.history} AS o WHERE {self._open('o')}",
            (DELETE, lsn, committed_at, committed_at, committed_at, synced_at),
        )

    def close_all_open(self, committed_at: Any) -> Statement:
        q, p = self.dialect.quote, self.dialect.placeholder
        return Statement(f"UPDATE {self.history} SET {q(VALID_TO)} = {p} WHERE {q(VALID_TO)} IS NULL",
                         (committed_at,))
