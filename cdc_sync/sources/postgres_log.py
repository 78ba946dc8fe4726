"""The PostgreSQL source's log side: cdc_sync's replication slot and publication (create, inspect, drop), and the
pgoutput messages read from the slot up to an LSN, then the slot moved past them.

This module holds the SQL of log capture (:mod:`cdc_sync.sources.publication` holds its rules). It runs over an
ordinary psycopg 3 connection, since psycopg has no streaming replication: ``pg_logical_slot_peek_binary_changes``
decodes from the slot's restart point each time and returns its whole result, so a cycle peeks up to an LSN taken
when it starts, commits what it read in the warehouse, and only then calls :meth:`PostgresLog.advance`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cdc_sync.errors import ConfigError, SlotCreationBlocked
from cdc_sync.sources.base import quote
from cdc_sync.sources.pgoutput import Message, decode_all, format_lsn, parse_lsn
from cdc_sync.sources.postgres import CURRENT_SCHEMA_SQL, SESSION_SETTINGS_SQL, USE_SCHEMA_SQL
from cdc_sync.sources.publication import (
    COLUMN_LISTS_FROM,
    LogNames,
    PublishedTable,
    ReplicaIdentity,
    SourceFacts,
    log_capture_refusal,
    ownership_mark,
    publication_problems,
    publication_shape,
    with_column_lists,
)
from cdc_sync.urls import URL, postgres_conninfo, source_schema

FACTS_SQL = """
SELECT current_setting('wal_level'), current_setting('server_version_num')::int, r.rolname::text, r.rolsuper,
       r.rolreplication,
       EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = 'rds_replication' AND pg_has_role(r.oid, g.oid, 'MEMBER')),
       has_database_privilege(current_database(), 'CREATE'),
       ARRAY(SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = current_schema() AND c.relname = ANY(%s)
                AND NOT pg_has_role(r.oid, c.relowner, 'USAGE') ORDER BY c.relname),
       (SELECT count(*) FROM pg_replication_slots), current_setting('max_replication_slots')::int
FROM pg_roles r WHERE r.rolname = current_user
"""
# The replica identity of each table: the primary key's columns (DEFAULT), the chosen index's (USING INDEX).
IDENTITY_SQL = """
SELECT c.relname, c.relreplident::text,
       ARRAY(SELECT a.attname::text FROM pg_index i
               CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ordinality)
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
              WHERE i.indrelid = c.oid
                AND ((c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))
              ORDER BY k.ordinality),
       ARRAY(SELECT a.attname::text FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relname = ANY(%s)
"""
PUBLICATION_SQL = """
SELECT obj_description(p.oid, 'pg_publication') FROM pg_publication p WHERE p.pubname = %s
"""
# Each published table, its published columns, and whether the publication lists them (prattrs: NULL when whole).
PUBLISHED_TABLES_SQL = """
SELECT t.tablename::text, t.attnames::text[], r.prattrs IS NOT NULL
FROM pg_publication_tables t
JOIN pg_publication p ON p.pubname = t.pubname
JOIN pg_namespace n ON n.nspname = t.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename
JOIN pg_publication_rel r ON r.prpubid = p.oid AND r.prrelid = c.oid
WHERE t.pubname = %s ORDER BY t.tablename
"""
SLOT_SQL = """
SELECT plugin, active, restart_lsn::text, confirmed_flush_lsn::text,
       (pg_current_wal_lsn() - restart_lsn)::bigint, wal_status
FROM pg_replication_slots WHERE slot_name = %s AND database = current_database()
"""
FOREIGN_SLOT_SQL = "SELECT database, plugin FROM pg_replication_slots WHERE slot_name = %s"
CREATE_SLOT_SQL = "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')"
# pg_create_logical_replication_slot() returns only once every transaction that held a transaction id when it began
# has ended, in whatever database of the server (the slot's first snapshot must see no writer running). A batch
# job's long write, a migration or a session left idle in a transaction would hold the call, and the cycle, until
# it ends; a cycle bounds the wait with a statement timeout local to the call's transaction (a cancelled creation
# leaves no slot: the slot is temporary until it is complete).
STATEMENT_TIMEOUT_SQL = "SELECT set_config('statement_timeout', %s, true)"
# The oldest writer the role may see: its pid, database and start (NULL for other roles' sessions without
# pg_read_all_stats); prepared transactions block creation too.
OLDEST_WRITER_SQL = """
SELECT pid, datname::text, xact_start FROM pg_stat_activity
WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() ORDER BY xact_start LIMIT 1
"""
DROP_SLOT_SQL = "SELECT pg_drop_replication_slot(%s)"
CURRENT_LSN_SQL = "SELECT pg_current_wal_lsn()::text"
PEEK_SQL = """
SELECT lsn::text, xid::text::bigint, data
FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, %s, 'proto_version', '1', 'publication_names', %s)
"""
ADVANCE_SQL = "SELECT end_lsn::text FROM pg_replication_slot_advance(%s, %s::pg_lsn)"
# Rows fetched per round trip from a peek (each holds one message; a row's TOASTed values may be large).
PEEK_FETCH_ROWS = 1000


class ForeignLogObjectError(ConfigError):
    """A replication slot or publication of cdc_sync's name exists, but cdc_sync did not make it."""


@dataclass(frozen=True)
class LogStatus:
    """What exists on the source for one destination schema's log capture."""

    names: LogNames
    publication_exists: bool
    publication_owned: bool
    slot_exists: bool
    slot_owned: bool
    active: bool = False  # a session is reading the slot now
    restart_lsn: int | None = None
    confirmed_flush_lsn: int | None = None
    retained_wal_bytes: int | None = None  # WAL the slot keeps from being recycled
    wal_status: str | None = None  # reserved, extended, unreserved or lost
    tables: tuple[PublishedTable, ...] = ()

    @property
    def ready(self) -> bool:
        return self.publication_owned and self.slot_owned


@dataclass(frozen=True)
class LogChange:
    """One decoded message and where it stands in the log."""

    lsn: int
    xid: int
    message: Message


class PostgresLog:
    """cdc_sync's slot and publication on one PostgreSQL database, on a connection of its own (autocommit)."""

    def __init__(self, url: URL, names: LogNames) -> None:
        import psycopg

        self.names = names
        self._connection = psycopg.connect(**postgres_conninfo(url), autocommit=True)
        self._connection.execute(SESSION_SETTINGS_SQL)
        schema = source_schema(url)
        if schema is not None:
            self._connection.execute(USE_SCHEMA_SQL, (quote(schema),))

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> PostgresLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._connection.execute(sql, params).fetchone()

    # What exists, and whose it is.

    def status(self) -> LogStatus:
        names = self.names
        publication = self._one(PUBLICATION_SQL, (names.publication,))
        publication_owned = publication is not None and publication[0] == ownership_mark(names)
        tables: tuple[PublishedTable, ...] = ()
        if publication_owned:
            rows = self._connection.execute(PUBLISHED_TABLES_SQL, (names.publication,)).fetchall()
            tables = tuple(PublishedTable(name, tuple(columns), listed) for name, columns, listed in rows)
        slot = self._one(SLOT_SQL, (names.slot,))
        if slot is None:
            slot_exists = self._one(FOREIGN_SLOT_SQL, (names.slot,)) is not None
            return LogStatus(names, publication is not None, publication_owned, slot_exists, False, tables=tables)
        plugin, active, restart, confirmed, retained, wal_status = slot
        return LogStatus(
            names, publication is not None, publication_owned, True,
            slot_owned=publication_owned and plugin == "pgoutput", active=active,
            restart_lsn=None if restart is None else parse_lsn(restart),
            confirmed_flush_lsn=None if confirmed is None else parse_lsn(confirmed),
            retained_wal_bytes=retained, wal_status=wal_status, tables=tables,
        )

    def _owned_status(self) -> LogStatus:
        """The status, once it is proved that nothing of these names belongs to someone else."""
        status = self.status()
        if status.publication_exists and not status.publication_owned:
            raise ForeignLogObjectError(
                f"Publication {self.names.publication} exists on the source but was not made by cdc_sync (it lacks "
                "cdc_sync's comment), so it is left alone: name another with the publication option."
            )
        if status.slot_exists and not status.slot_owned:
            raise ForeignLogObjectError(
                f"Replication slot {self.names.slot} exists on the source but was not made by cdc_sync (no "
                "publication of cdc_sync's names it, or it is in another database or decodes with another plugin), "
                "so it is left alone: name another with the slot option."
            )
        return status

    def facts(self, tables: Sequence[PublishedTable]) -> SourceFacts:
        """What decides whether this role may capture ``tables`` from the log: the settings, the role's rights,
        and whether cdc_sync's slot and a publication of exactly these tables and columns exist already."""
        row = self._one(FACTS_SQL, ([table.name for table in tables],))
        status = self.status()
        return SourceFacts(*row[:7], unowned_tables=tuple(row[7]), slots_used=row[8], slots_allowed=row[9],
                           slot_ready=status.slot_owned, slot_retained_wal=status.retained_wal_bytes,
                           published_tables=tuple(table.name for table in status.tables),
                           publication_current=status.publication_owned and publication_shape(status.tables)
                           == publication_shape(with_column_lists(tables, self._identities([t.name for t in tables]))))

    def refusal(self, tables: Sequence[PublishedTable]) -> str | None:
        """Why this source role cannot capture ``tables`` from the log, or None when it can (the ``auto`` choice)."""
        return log_capture_refusal(self.facts(tables))

    # Setup and teardown.

    def setup(self, tables: Sequence[PublishedTable], slot_wait_seconds: float | None = None) -> list[str]:
        """Create (or bring up to date) the publication for exactly ``tables``, then the slot; returns what was
        done, one line each. Refuses before creating anything when a table cannot be published safely.
        ``slot_wait_seconds``: how long the slot's creation may wait for running transactions (None: as long as
        they run); past it :class:`SlotCreationBlocked` is raised and no slot exists."""
        status = self._owned_status()
        identities = self._identities([table.name for table in tables])
        column_lists = int(self._one("SHOW server_version_num")[0]) >= COLUMN_LISTS_FROM
        problems = publication_problems(tables, identities, column_lists)
        if problems:
            raise ConfigError(f"Cannot publish the synced tables for log capture: {'; '.join(problems)}. "
                              "Leave those tables out, or use the query capture mode.")
        done: list[str] = []
        tables = with_column_lists(tables, identities)
        schema = quote(self._one(CURRENT_SCHEMA_SQL)[0])
        table_list = ", ".join(
            f"{schema}.{quote(table.name)}"
            + (f" ({', '.join(quote(column) for column in table.columns)})" if table.column_list else "")
            for table in tables
        )
        publication = quote(self.names.publication)
        if not status.publication_exists:
            with self._connection.transaction():
                self._connection.execute(f"CREATE PUBLICATION {publication} FOR TABLE {table_list}")
                # COMMENT takes no server-side parameter: psycopg's client-side binding quotes the value.
                self._client_cursor().execute(f"COMMENT ON PUBLICATION {publication} IS %s",
                                              (ownership_mark(self.names),))
            done.append(f"created publication {self.names.publication} for {_describe(tables)}")
        elif publication_shape(status.tables) != publication_shape(tables):
            self._connection.execute(f"ALTER PUBLICATION {publication} SET TABLE {table_list}")
            done.append(f"set the tables of publication {self.names.publication} to {_describe(tables)}")
        if not status.slot_exists:
            lsn = self._create_slot(slot_wait_seconds)
            done.append(f"created replication slot {self.names.slot} (pgoutput) at {lsn}")
        return done

    def _create_slot(self, wait_seconds: float | None) -> str:
        import psycopg

        if wait_seconds is None:
            return self._one(CREATE_SLOT_SQL, (self.names.slot,))[0]
        try:
            with self._connection.transaction():
                self._one(STATEMENT_TIMEOUT_SQL, (f"{max(1, round(wait_seconds * 1000))}ms",))
                return self._one(CREATE_SLOT_SQL, (self.names.slot,))[0]
        except psycopg.errors.QueryCanceled:
            raise SlotCreationBlocked(self._blocked_reason(wait_seconds)) from None

    def _blocked_reason(self, waited: float) -> str:
        writer = self._one(OLDEST_WRITER_SQL)
        oldest = ""
        if writer is not None and writer[2] is not None:
            pid, database, since = writer
            oldest = f" (the oldest: pid {pid} in database {database}, open since {since:%Y-%m-%d %H:%M:%S %Z})"
        return (f"PostgreSQL could not make the replication slot {self.names.slot} within {waited:g} s: it waits "
                "until every write transaction running on the server when it began has ended, in any database, "
                f"and one was still open{oldest}")

    def drop(self) -> list[str]:
        """Drop the slot, then the publication (only cdc_sync's own); returns what was dropped."""
        status = self._owned_status()
        done: list[str] = []
        if status.slot_exists:
            self._one(DROP_SLOT_SQL, (self.names.slot,))
            done.append(f"dropped replication slot {self.names.slot}")
        if status.publication_exists:
            self._connection.execute(f"DROP PUBLICATION {quote(self.names.publication)}")
            done.append(f"dropped publication {self.names.publication}")
        return done

    # Reading.

    def current_lsn(self) -> int:
        """The end of the WAL now: a cycle reads up to here and no further."""
        return parse_lsn(self._one(CURRENT_LSN_SQL)[0])

    def peek(self, upto_lsn: int | None, upto_changes: int | None = None) -> Iterator[LogChange]:
        """The slot's messages from its confirmed position up to ``upto_lsn`` (whole transactions, those committed
        at or before it), without consuming them. ``upto_changes`` bounds one call (it stops at the end of the
        transaction holding that many changes)."""
        self._require_ready()
        lsn = None if upto_lsn is None else format_lsn(upto_lsn)
        with self._connection.transaction():
            cursor = self._connection.cursor(name="cdc_sync_peek")
            cursor.itersize = PEEK_FETCH_ROWS
            cursor.execute(PEEK_SQL, (self.names.slot, lsn, upto_changes, quote(self.names.publication)))
            for lsn_text, xid, data in cursor:
                for message in decode_all(data):
                    yield LogChange(parse_lsn(lsn_text), xid, message)

    def advance(self, lsn: int) -> int:
        """Move the slot to ``lsn`` once the warehouse has committed everything up to it, so the source may
        recycle that WAL; a position at or below the slot's is left as it is (a replay after a crash)."""
        status = self._require_ready()
        if status.confirmed_flush_lsn is not None and lsn <= status.confirmed_flush_lsn:
            return status.confirmed_flush_lsn
        return parse_lsn(self._one(ADVANCE_SQL, (self.names.slot, format_lsn(lsn)))[0])

    def _require_ready(self) -> LogStatus:
        status = self._owned_status()
        if not status.ready:
            raise ConfigError(f"Log capture is not set up on the source (slot {self.names.slot}, publication "
                              f"{self.names.publication}): run `cdc-sync capture setup`.")
        return status

    # Helpers.

    def _identities(self, tables: list[str]) -> dict[str, ReplicaIdentity]:
        rows = self._connection.execute(IDENTITY_SQL, (tables,)).fetchall()
        return {name: ReplicaIdentity(kind, tuple(key), tuple(columns)) for name, kind, key, columns in rows}

    def _client_cursor(self) -> Any:
        import psycopg

        return psycopg.ClientCursor(self._connection)


def _describe(tables: Sequence[PublishedTable]) -> str:
    return "; ".join(f"{table.name} ({', '.join(table.columns) if table.column_list else 'every column'})"
                     for table in tables)
