"""Snowflake: upper-case identifiers, Parquet files ``PUT`` to a table stage and ``COPY INTO`` staging, one MERGE.

Two Snowflake rules shape this module:

* **DDL commits.** Any DDL statement commits the open transaction. The destination therefore sends ``BEGIN``
  lazily, at the first data-changing statement, so the table's DDL (create, add column, staging tables) runs before
  it and the MERGE, the deletes and the watermark commit together. Staging tables are never created or dropped
  inside the transaction: drops wait for the commit, and the key-staging table of a table is created next to its
  row-staging table up front, then emptied with ``DELETE`` when it is needed.
* **Strict MERGE.** A MERGE whose source holds two rows for one target row fails (nondeterministic merge), so the
  source is always the staging table deduplicated by merge key (``MERGE … USING (SELECT …) AS s``).

Users query the mirror unquoted (``SELECT count(*) FROM task_instance``), which Snowflake resolves to upper case,
so tables and columns are created in upper case. The schema is quoted exactly as given (``"airflow-qwe123"``).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from cdc_sync.destinations.base import Destination
from cdc_sync.destinations.dialect import LOCKS, ColumnSpec, LeaseLockDialect, Statement, lease_name
from cdc_sync.destinations.snowflake_settings import connect_arguments
from cdc_sync.destinations.snowflake_settings import (  # looked up by engine name (cdc_sync.airflow.connections)
    snowflake_settings_from_connection as snowflake_settings_from_connection,
)
from cdc_sync.errors import DestinationError, TerminalDestinationError
from cdc_sync.types import LogicalType
from cdc_sync.urls import URL, redact

DDL_VERBS = ("CREATE", "ALTER", "DROP")
# Rows per Parquet file: a few tens of MB per file, which is what COPY INTO loads fastest.
ROWS_PER_FILE = 250_000
DEFAULT_LEASE_SECONDS = 2 * 3600
_UNQUOTED = re.compile(r"^[A-Z_][A-Z0-9_$]*$")


@dataclass(frozen=True)
class StagingStatement(Statement):
    """DDL of a session-scoped staging table, marked so the destination can keep it out of the transaction."""

    action: str = ""  # "create" | "drop"
    staging: str = ""
    columns: tuple[ColumnSpec, ...] = ()


class SnowflakeDialect(LeaseLockDialect):
    name = "snowflake"
    max_identifier_length = 255
    TYPE_NAMES = {
        LogicalType.BOOLEAN: "BOOLEAN",
        LogicalType.INTEGER: "NUMBER(38,0)",
        LogicalType.DOUBLE: "FLOAT",
        LogicalType.TEXT: "VARCHAR",  # no length: the largest Snowflake allows, so stack traces fit
        LogicalType.JSON: "VARIANT",
        LogicalType.BYTES: "BINARY",
        LogicalType.TIMESTAMP_TZ: "TIMESTAMP_TZ(6)",  # microseconds, like the source
        LogicalType.TIMESTAMP: "TIMESTAMP_NTZ(6)",
        LogicalType.DATE: "DATE",
    }
    REPORTED_TYPES = {
        LogicalType.INTEGER: "NUMBER",
        LogicalType.TEXT: "TEXT",
        LogicalType.TIMESTAMP_TZ: "TIMESTAMP_TZ",
        LogicalType.TIMESTAMP: "TIMESTAMP_NTZ",
    }

    KEY_TEXT_TYPE = "VARCHAR"
    HEX_TO_INTEGER = "TO_NUMBER({}, 'XXXXXXXX')"

    def fold(self, identifier: str) -> str:
        return identifier.upper()

    def create_staging(self, staging: str, columns: Sequence[ColumnSpec]) -> Statement:
        base = super().create_staging(staging, columns)
        return StagingStatement(base.sql, (), "create", staging, tuple(columns))

    def drop_staging(self, staging: str) -> Statement:
        return StagingStatement(super().drop_staging(staging).sql, (), "drop", staging)

    def empty_staging(self, staging: str) -> Statement:
        """Empty a staging table inside a transaction (``DELETE`` is DML; a re-create would commit)."""
        return Statement(f"DELETE FROM {self.quote(staging)}")

    def companion_staging(self, staging: str) -> str | None:
        """The key-staging table of a row-staging table (same length prefix, so truncation maps one to one)."""
        rows, keys = self.staging_name("", "rows"), self.staging_name("", "keys")
        return keys + staging[len(rows):] if staging.startswith(rows) else None

    # ---- session -------------------------------------------------------------------------------------------
    def transaction(self, verb: Literal["BEGIN", "COMMIT", "ROLLBACK"]) -> Statement:
        """Transaction control, sent as statements: the connector runs in autocommit (see the module docstring)."""
        return Statement(verb)

    def use_schema(self, schema: str) -> Statement:
        return Statement(f"USE SCHEMA {self.quote_schema(schema)}")

    def table_stage(self, database: str, schema: str, staging: str) -> str:
        """``@DB."schema".%NAME``: the table's own stage, so no stage object has to be created (no DDL)."""
        name = self.fold(staging)
        name = name if _UNQUOTED.match(name) else self.quote(staging)
        return f"@{self.quote(database)}.{self.quote_schema(schema)}.%{name}"

    def put(self, path: Path, stage: str) -> Statement:
        """PUT takes no bind parameters; ``path`` is a file name this process generated, quoted as a literal."""
        literal = "'file://" + path.as_posix().replace("\\", "\\\\").replace("'", "\\'") + "'"
        return Statement(f"PUT {literal} {stage} AUTO_COMPRESS = FALSE OVERWRITE = TRUE")

    def load_expression(self, column: ColumnSpec) -> str:
        field = "$1:" + '"' + column.name.replace('"', '""') + '"'
        if column.logical_type is LogicalType.JSON:
            return f"PARSE_JSON({field})"
        return f"{field}::{self.type_name(column.logical_type)}"

    def copy_into(self, staging: str, stage: str, columns: Sequence[ColumnSpec]) -> Statement:
        """Load every Parquet file of the stage; ``PURGE`` removes them, so a retry never loads a file twice."""
        fields = ", ".join(self.load_expression(c) for c in columns)
        return Statement(
            f"COPY INTO {self.quote(staging)} ({self.column_list([c.name for c in columns])}) "
            f"FROM (SELECT {fields} FROM {stage}) FILE_FORMAT = (TYPE = PARQUET) PURGE = TRUE"
        )

    # ---- the cycle lock: a lease row ------------------------------------------------------------------------
    # Snowflake enforces no primary key on a standard table, so nothing may rest on one. The lease is taken by one
    # conditional UPDATE whose row count decides: Snowflake runs the UPDATEs (and DELETEs) of a table one at a
    # time, each against the rows the previous one committed, and the UPDATE takes the lock's rows only when none
    # of them is held, so of two cycles the second finds the first's lease. The rows are created free, by a MERGE
    # that inserts one only where none exists; should two cycles insert at once (Snowflake says only that MERGE
    # "generally" waits for other writers), or one land after the lease was taken, the extra rows are free rows
    # of a held lock, which the next UPDATE takes along with the others once the lock is free. Run alone
    # (autocommit), each statement is its own transaction.
    def create_lease_row(self, schema: str, lock: str) -> Statement:
        """A free row for the lock, unless it has one."""
        name, owner, until = self.quote("lock_name"), self.quote("holder"), self.quote("expires_at")
        return Statement(
            f"MERGE INTO {self.table(schema, LOCKS)} AS t USING (SELECT {self.placeholder} AS {name}) AS s "
            f"ON t.{name} = s.{name} WHEN NOT MATCHED THEN INSERT ({name}, {owner}, {until}) "
            f"VALUES (s.{name}, NULL, NULL)",
            (lock,),
        )

    def take_lease(self, schema: str, lock: str, holder: str, now: datetime, expires: datetime) -> Statement:
        """Take all the lock's rows if none is held by a live lease: rows updated means taken, none means held."""
        p = self.placeholder
        locks, name, owner, until = (self.table(schema, LOCKS), self.quote("lock_name"), self.quote("holder"),
                                     self.quote("expires_at"))
        return Statement(
            f"UPDATE {locks} SET {owner} = {p}, {until} = {p} WHERE {name} = {p} AND NOT EXISTS ("
            f"SELECT 1 FROM {locks} AS held WHERE held.{name} = {p} AND held.{owner} IS NOT NULL "
            f"AND held.{until} >= {p})",
            (holder, expires, lock, lock, now),
        )

    def release_lease(self, schema: str, lock: str, holder: str) -> Statement:
        """Free the lease (the row stays, so the next cycle needs no new one) if this holder still has it."""
        p = self.placeholder
        owner, until = self.quote("holder"), self.quote("expires_at")
        return Statement(
            f"UPDATE {self.table(schema, LOCKS)} SET {owner} = NULL, {until} = NULL "
            f"WHERE {self.quote('lock_name')} = {p} AND {owner} = {p}",
            (lock, holder),
        )


def is_ddl(statement: Statement) -> bool:
    return statement.sql.lstrip().upper().startswith(DDL_VERBS)


class SnowflakeDestination(Destination):
    dialect = SnowflakeDialect()

    def __init__(self, url: URL, options: Mapping[str, Any] | None = None) -> None:
        import snowflake.connector

        super().__init__(url, options)
        arguments = connect_arguments(url, self.options)
        self.database = str(arguments["database"])
        self.lease_seconds = float(self.options.get("lock_lease_seconds", DEFAULT_LEASE_SECONDS))
        try:
            self._connection = snowflake.connector.connect(**arguments)
        except snowflake.connector.errors.Error as error:
            raise DestinationError(
                f"Cannot connect to Snowflake {redact(url)} (error {getattr(error, 'errno', '?')}): check the "
                "account, user, credentials, database and warehouse."
            ) from None
        self._cursor = self._connection.cursor()
        self._want_transaction = False
        self._in_transaction = False
        self._deferred: list[Statement] = []
        self._staging: dict[str, tuple[ColumnSpec, ...]] = {}
        self._leases: dict[str, tuple[str, str]] = {}  # lock name: (schema, holder)
        self._schema: str | None = None

    # ---- statements -----------------------------------------------------------------------------------------
    def _run(self, statement: Statement) -> Any:
        return self._cursor.execute(statement.sql, statement.params or None)

    def execute(self, statement: Statement) -> int:
        if isinstance(statement, StagingStatement):
            return self._staging_ddl(statement)
        if is_ddl(statement):
            if self._in_transaction:
                raise TerminalDestinationError(
                    "A schema change was requested after the table's data changes began; on Snowflake it would "
                    "commit them early. This is a bug in cdc_sync: please report it."
                )
            self._run(statement)
            return -1
        self._ensure_transaction()
        cursor = self._run(statement)
        return cursor.rowcount if cursor.rowcount is not None else -1

    def _staging_ddl(self, statement: StagingStatement) -> int:
        if statement.action == "drop":
            if self._in_transaction:
                self._deferred.append(statement)
            else:
                self._run(statement)
                self._staging.pop(statement.staging, None)
            return -1
        existing = self._staging.get(statement.staging)
        if self._in_transaction:
            if existing is None or not {c.name for c in statement.columns} <= {c.name for c in existing}:
                raise TerminalDestinationError(
                    f"Staging table {statement.staging} was not prepared before the transaction: this is a bug in "
                    "cdc_sync, please report it."
                )
            self._run(self.dialect.empty_staging(statement.staging))
            self._deferred = [d for d in self._deferred if getattr(d, "staging", None) != statement.staging]
            self._deferred.append(self.dialect.drop_staging(statement.staging))
            return -1
        self._run(statement)
        self._staging[statement.staging] = statement.columns
        companion = self.dialect.companion_staging(statement.staging)
        if companion and companion not in self._staging:
            # Deletes are reconciled after the MERGE; their key table must already exist by then.
            self._run(self.dialect.drop_staging(companion))
            self._run(self.dialect.create_staging(companion, statement.columns))
            self._staging[companion] = statement.columns
        return -1

    def query(self, statement: Statement) -> list[tuple[Any, ...]]:
        return list(self._run(statement).fetchall())

    # ---- transactions ----------------------------------------------------------------------------------------
    def _ensure_transaction(self) -> None:
        if self._want_transaction and not self._in_transaction:
            self._run(self.dialect.transaction("BEGIN"))
            self._in_transaction = True

    def begin(self) -> None:
        self._want_transaction = True

    def _finish(self, verb: Literal["COMMIT", "ROLLBACK"]) -> None:
        try:
            if self._in_transaction:
                if verb == "COMMIT":
                    self._renew_leases()
                self._run(self.dialect.transaction(verb))
        finally:
            self._want_transaction = self._in_transaction = False
            deferred, self._deferred = self._deferred, []
            for statement in deferred:
                self._staging_ddl(statement)  # type: ignore[arg-type]

    def commit(self) -> None:
        self._finish("COMMIT")

    def rollback(self) -> None:
        self._finish("ROLLBACK")

    # ---- bulk load ---------------------------------------------------------------------------------------------
    def load(self, staging: str, columns: Sequence[ColumnSpec], batches: Iterable[pa.RecordBatch]) -> int:
        """Write batches to Parquet files of at most ROWS_PER_FILE rows, PUT each, then one COPY INTO."""
        if self._schema is None:
            raise TerminalDestinationError("Snowflake staging needs the cycle lock (and its schema) first.")
        stage = self.dialect.table_stage(self.database, self._schema, staging)
        directory = Path(tempfile.mkdtemp(prefix="cdc_sync_sf_"))
        rows = files = 0
        writer: pq.ParquetWriter | None = None
        in_file = 0
        try:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                if writer is None:
                    files += 1
                    path = directory / f"{staging.lower()}_{uuid.uuid4().hex}.parquet"
                    writer = pq.ParquetWriter(path, batch.schema)
                writer.write_batch(batch)
                rows += batch.num_rows
                in_file += batch.num_rows
                if in_file >= ROWS_PER_FILE:
                    writer.close()
                    self._run(self.dialect.put(path, stage))
                    writer, in_file = None, 0
            if writer is not None:
                writer.close()
                self._run(self.dialect.put(path, stage))
            if files:
                self._run(self.dialect.copy_into(staging, stage, columns))
        finally:
            if writer is not None:
                writer.close()
            shutil.rmtree(directory, ignore_errors=True)
        return rows

    # ---- lock ---------------------------------------------------------------------------------------------------
    def _expiry(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.lease_seconds)

    def _renew_leases(self) -> None:
        """Push back the expiry of every lease this connection holds (in the open transaction)."""
        for lock, (schema, holder) in self._leases.items():
            self._run(self.dialect.renew_lease(schema, lock, holder, self._expiry()))

    def use_schema(self, schema: str) -> None:
        self._run(self.dialect.use_schema(schema))
        self._schema = schema

    def try_lock(self, schema: str, table: str | None = None) -> bool:
        """A lease row, not a session lock: Snowflake has no advisory locks, and a lease that expires lets the
        next cycle proceed after a crashed one. It is taken by two statements that each commit alone (after the
        lock table's DDL, never inside a data transaction; see the dialect); taking one, and every data commit on
        this connection, renews the others it holds, so a long cycle keeps them while a dead one loses them after
        ``lock_lease_seconds``."""
        if table is None:
            self.ensure_schema(schema)
        if self._schema != schema:
            self.use_schema(schema)
        self._run(self.dialect.create_lock_table(schema))
        lock, holder = lease_name(schema, table), uuid.uuid4().hex
        self._run(self.dialect.create_lease_row(schema, lock))
        taken = self._run(self.dialect.take_lease(schema, lock, holder, datetime.now(UTC), self._expiry()))
        if not taken.rowcount or taken.rowcount < 1:
            return False
        self._leases[lock] = (schema, holder)
        self._renew_leases()
        return True

    def unlock(self, schema: str, table: str | None = None) -> None:
        lock = lease_name(schema, table)
        if lock in self._leases:
            self._run(self.dialect.release_lease(schema, lock, self._leases.pop(lock)[1]))

    def close(self) -> None:
        self._connection.close()
