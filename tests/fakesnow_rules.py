"""fakesnow made to behave as Snowflake where cdc_sync's correctness depends on it, for in-process tests and for
``cdc-sync`` subprocesses (tests/fault_run.py).

* **DDL commits.** On Snowflake any DDL statement commits the open transaction, then runs in one of its own.
  fakesnow runs it inside the transaction (and rolls it back with it) when the session is in autocommit mode with
  an explicit ``BEGIN``, as cdc_sync's is. :func:`make_ddl_commit` restores Snowflake's rule, so a failure after a
  schema change leaves the change in place, as it would in a real account.
* fakesnow 0.12.1 emulates MERGE with a temporary table and records a NULL comment for it in another DuckDB
  database, which DuckDB refuses inside a transaction; :func:`skip_null_comments` skips that bookkeeping.
"""

from __future__ import annotations

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
