"""fakesnow made to behave as Snowflake where cdc_sync's correctness depends on it, for in-process tests and for
``cdc-sync`` subprocesses (tests/fault_run.py).

* **DDL commits.** On Snowflake any DDL statement commits the open transaction, then runs in one of its own.
  fakesnow runs it inside the transaction (and rolls it back with it) when the session is in autocommit mode with
  an explicit ``BEGIN``, as cdc_sync's is. :func:`make_ddl_commit` restores Snowflake's rule, so a failure after a
  schema change leaves the change in place, as it would in a real account.
* fakesnow 0.12.1 emulates MERGE with a temporary table and records a NULL comment for it in another DuckDB
  database, which DuckDB refuses inside a transaction; :func:`skip_null_comments` skips that bookkeeping.
* **Writers of one table wait for each other.** :func:`make_blocking_dml_wait` (see there).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

DDL_VERBS = {"CREATE", "ALTER", "DROP"}


def make_ddl_commit() -> Callable[[], None]:
    """Patch fakesnow's cursor so that DDL commits an open transaction first; returns the undo."""
    from fakesnow.cursor import FakeSnowflakeCursor

    original = FakeSnowflakeCursor.execute

    def execute(self, command, *args, **kwargs):
        verb = command.lstrip().split(None, 1)[0].upper() if command.strip() else ""
        connection = self._conn
        if verb in {"BEGIN", "START"}:
            connection._snowflake_transaction_open = True
        elif verb in {"COMMIT", "ROLLBACK"}:
            connection._snowflake_transaction_open = False
        elif verb in DDL_VERBS and getattr(connection, "_snowflake_transaction_open", False):
            original(self, "COMMIT")
            connection._snowflake_transaction_open = False
        return original(self, command, *args, **kwargs)

    FakeSnowflakeCursor.execute = execute

    def undo() -> None:
        FakeSnowflakeCursor.execute = original

    return undo


def skip_null_comments() -> Callable[[], None]:
    """Skip fakesnow's NULL table comments (see the module docstring); returns the undo."""
    import fakesnow.info_schema

    comment_sql = fakesnow.info_schema.insert_table_comment_sql

    def insert_table_comment_sql(catalog, schema, table, comment):
        return comment_sql(catalog, schema, table, comment) if comment is not None else "SELECT 1"

    fakesnow.info_schema.insert_table_comment_sql = insert_table_comment_sql

    def undo() -> None:
        fakesnow.info_schema.insert_table_comment_sql = comment_sql

    return undo


# UPDATE and DELETE, and the table each writes (its last name part, unquoted).
BLOCKING_DML = re.compile(r'^\s*(?:UPDATE|DELETE\s+FROM)\s+((?:"[^"]*"|[\w$]+)(?:\.(?:"[^"]*"|[\w$]+))*)',
                          re.IGNORECASE)


def make_blocking_dml_wait(timeout: float = 60.0) -> Callable[[], None]:
    """Snowflake's rule for writers of one table: an UPDATE or DELETE holds the table's lock to the end of its
    transaction, and another one on that table waits for it, then runs against what it committed. DuckDB under
    fakesnow does not wait: it fails the second writer of a row with a conflict. This restores the waiting (a lock
    per table name, per process), so a test of concurrent writers sees Snowflake's behaviour. Returns the undo.

    Snowflake says MERGE "generally" waits too, and that INSERT and COPY often run in parallel with other writers;
    neither is relied on, so both are left to run side by side here, the most lenient reading of those rules."""
    from fakesnow.cursor import FakeSnowflakeCursor

    original = FakeSnowflakeCursor.execute
    guard = threading.Lock()
    tables: dict[str, threading.Lock] = {}

    def table_lock(name: str) -> threading.Lock:
        with guard:
            return tables.setdefault(name, threading.Lock())

    def release(connection) -> None:
        for lock in connection.__dict__.pop("_snowflake_table_locks", {}).values():
            lock.release()

    def execute(self, command, *args, **kwargs):
        connection = self._conn
        verb = command.lstrip().split(None, 1)[0].upper() if command.strip() else ""
        if verb in {"BEGIN", "START"}:
            connection._snowflake_explicit_transaction = True
        written = BLOCKING_DML.match(command)
        if written:
            name = written.group(1).rsplit(".", 1)[-1].strip('"').upper()
            held = connection.__dict__.setdefault("_snowflake_table_locks", {})
            if name not in held:
                lock = table_lock(name)
                if not lock.acquire(timeout=timeout):
                    raise TimeoutError(f"waited {timeout:g} s for another transaction's lock on {name}")
                held[name] = lock
        try:
            return original(self, command, *args, **kwargs)
        finally:
            ends = verb in {"COMMIT", "ROLLBACK"} or verb in DDL_VERBS
            if ends or not getattr(connection, "_snowflake_explicit_transaction", False):
                if ends:
                    connection._snowflake_explicit_transaction = False
                release(connection)

    FakeSnowflakeCursor.execute = execute

    def undo() -> None:
        FakeSnowflakeCursor.execute = original

    return undo
