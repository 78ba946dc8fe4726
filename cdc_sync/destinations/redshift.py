"""Redshift: lower-case identifiers, SQL inside Redshift's rules, multi-row INSERT staging or COPY from S3.

Choices, and why:

* **Upsert = ``DELETE … USING`` + ``INSERT`` in the table's transaction**, not MERGE: Redshift's MERGE takes only a
  plain table source (so no deduplicating subquery), no target alias and no ``WHEN MATCHED AND …`` condition, so
  every matched row would be rewritten each cycle. The delete removes only matched rows that changed; the insert
  adds the latest staged version of each key that is not (or no longer) in the target.
* **Null-safe comparisons are spelled out** (``a = b OR (a IS NULL AND b IS NULL)``): ``IS DISTINCT FROM`` is not
  accepted by Redshift in every position.
* **Text longer than ``VARCHAR(65535)``**, which Redshift counts in *bytes*: the value is cut at a UTF-8 character
  boundary and ends with ``TRUNCATION_MARKER`` plus the original size, so the load never fails and a reader sees
  that the text was cut (stack traces keep their beginning, where the exception is). JSON goes to ``SUPER``
  (``JSON_PARSE``), bytes to ``VARBYTE``.
* **Bulk path**: ``COPY`` of Parquet files from S3 when ``s3_bucket`` and ``iam_role`` options are set; otherwise
  multi-row ``INSERT … VALUES`` with bound parameters into a temporary staging table, each statement kept under
  Redshift's 16 MB statement limit and the protocol's 32,767 parameters.
* **State writes under ``LOCK``**: Redshift runs every transaction SERIALIZABLE and checks it per table, so two
  tables' transactions that both read and write ``_cdc_watermarks`` (its ``DELETE`` reads it) would abort one with
  error 1023. Redshift's remedy is an explicit ``LOCK`` of the shared tables as the first statement, before the
  snapshot is taken. A transaction opened by :meth:`RedshiftDestination.begin` on a connection that knows its
  schema (:meth:`~RedshiftDestination.use_schema`) therefore does its session-local work first (dropping, creating
  and loading the temporary staging table while the source is read, committed alone: the rows stay in the
  session), and the first statement that touches anything else commits that, then takes ``LOCK _cdc_meta,
  _cdc_runs, _cdc_watermarks`` (one statement, always that order) and carries on: the MERGE, deletes and state of
  different tables take turns, their reads and staging run side by side. A statement counts as session-local only
  when the dialect built it as a :class:`SessionLocalStatement`; anything else takes the lock, so a new kind of write
  cannot slip past it. No deadlock: every ``LOCK`` names its tables in one order (``_cdc_locks`` first, where a
  connection that holds leases renews them at its commits, as ``verify --fix`` does), lease rows are otherwise
  taken and released in transactions of their own that lock only ``_cdc_locks``, and no transaction holding the
  state lock waits for a table another one holds.
* **Cycle locks**: Redshift has no advisory locks. A lease row in ``_cdc_locks`` per lock (the schema's, and one
  per table being synced) is taken and released under ``LOCK`` (an exclusive table lock held to commit, so two
  cycles cannot both see a lease free) in a transaction of its own; a lease expires after ``lock_lease_seconds``
  so a crashed cycle does not block a table forever, and taking a lease or committing on the connection renews
  the others.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cdc_sync.destinations.base import Destination
from cdc_sync.destinations.dialect import (
    DELETED_AT,
    LOCKS,
    SYNCED_AT,
    ColumnSpec,
    LeaseLockDialect,
    Statement,
    lease_name,
)
from cdc_sync.destinations.redshift_settings import connect_arguments
from cdc_sync.destinations.redshift_settings import (  # re-exported: airflow.connections looks it up by engine
    redshift_settings_from_connection as redshift_settings_from_connection,
)
from cdc_sync.destinations.redshift_values import VARCHAR_MAX_BYTES, fit_batch, row_chunks
from cdc_sync.errors import DestinationError
from cdc_sync.state import META, RUNS, WATERMARKS
from cdc_sync.types import LogicalType
from cdc_sync.urls import URL, redact

log = logging.getLogger("cdc_sync")

DEFAULT_LEASE_SECONDS = 2 * 3600


@dataclass(frozen=True)
class Script(Statement):
    """Several statements run in order in the open transaction; the affected rows of ``counted`` are reported."""

    parts: tuple[Statement, ...] = ()
    counted: int = -1


@dataclass(frozen=True)
class SessionLocalStatement(Statement):
    """A statement on a session-local temporary table only: it may run before the state lock."""


# The tables every table's transaction reads or writes besides its own mirror, locked in this order, after the
# lease table where the transaction renews leases (LOCKS sorts first: every LOCK takes its tables in one order).
SHARED_STATE_TABLES = tuple(sorted((META, RUNS, WATERMARKS)))


class RedshiftDialect(LeaseLockDialect):
    name = "redshift"
    max_identifier_length = 127
    TYPE_NAMES = {
        **LeaseLockDialect.TYPE_NAMES,
        LogicalType.TEXT: f"VARCHAR({VARCHAR_MAX_BYTES})",
        LogicalType.JSON: "SUPER",
        LogicalType.BYTES: "VARBYTE(1024000)",
        LogicalType.TIMESTAMP_TZ: "TIMESTAMPTZ",
    }
    REPORTED_TYPES = {
        LogicalType.TEXT: "character varying",
        LogicalType.JSON: "super",
        LogicalType.BYTES: "binary varying",
        LogicalType.TIMESTAMP_TZ: "timestamp with time zone",
        LogicalType.TIMESTAMP: "timestamp without time zone",
    }

    # Redshift's TEXT is VARCHAR(256), and it has no bit strings: STRTOL reads hex.
    KEY_TEXT_TYPE = f"VARCHAR({VARCHAR_MAX_BYTES})"
    HEX_TO_INTEGER = "STRTOL({}, 16)"

    def fold(self, identifier: str) -> str:
        return identifier.lower()

    def quote_schema(self, schema: str) -> str:
        # Redshift folds even quoted names to lower case; saying so keeps every lookup consistent.
        return '"' + schema.lower().replace('"', '""') + '"'

    def schema_exists(self, schema: str) -> Statement:
        return super().schema_exists(schema.lower())

    def table_columns(self, schema: str, table: str) -> Statement:
        return Statement(super().table_columns(schema, table).sql, (schema.lower(), self.fold(table)))

    def schema_columns(self, schema: str) -> Statement:
        return Statement(super().schema_columns(schema).sql, (schema.lower(),))

    @staticmethod
    def _same(left: str, right: str) -> str:
        return f"({left} = {right} OR ({left} IS NULL AND {right} IS NULL))"

    def _key_match(self, key: Sequence[str], left: str, right: str, nullable: frozenset[str]) -> str:
        parts = []
        for name in key:
            a, b = f"{left}.{self.quote(name)}", f"{right}.{self.quote(name)}"
            parts.append(self._same(a, b) if name in nullable else f"{a} = {b}")
        return " AND ".join(parts)

    def changed(self, columns: Sequence[str], target: str, source: str) -> str:
        tests = [f"NOT {self._same(f'{target}.{self.quote(c)}', f'{source}.{self.quote(c)}')}" for c in columns]
        tests.append(f"{target}.{self.quote(DELETED_AT)} IS NOT NULL")
        return "(" + " OR ".join(tests) + ")"

    def merge(self, schema: str, table: str, staging: str, columns: Sequence[str], key: Sequence[str],
              order_by: str | None, nullable_key: frozenset[str], synced_at: Any,
              compare_rows: bool = True) -> Statement:
        target, source = self.table(schema, table), self.quote(staging)
        non_key = [c for c in columns if c not in key]
        only_changed = f" AND {self.changed(non_key, target, source)}" if compare_rows else ""
        delete = Statement(
            f"DELETE FROM {target} USING {source} WHERE {self._key_match(key, target, source, nullable_key)}"
            + only_changed
        )
        insert = Statement(
            f"INSERT INTO {target} ({self.column_list([*columns, SYNCED_AT])}) "
            f"SELECT {self.column_list(columns, 'latest.')}, {self.placeholder} "
            f"FROM ({self.deduplicated(staging, columns, key, order_by)}) AS latest "
            f"WHERE NOT EXISTS (SELECT 1 FROM {target} WHERE {self._key_match(key, target, 'latest', nullable_key)})",
            (synced_at,),
        )
        return Script(f"{delete.sql};\n{insert.sql}", (synced_at,), (delete, insert), counted=1)

    def insert_values(self, staging: str, columns: Sequence[ColumnSpec], rows: int) -> str:
        """One multi-row INSERT of ``rows`` rows; JSON values are parsed into SUPER on the way in."""
        p = self.placeholder
        row = "(" + ", ".join(f"JSON_PARSE({p})" if c.logical_type is LogicalType.JSON else p for c in columns) + ")"
        return (f"INSERT INTO {self.quote(staging)} ({self.column_list([c.name for c in columns])}) VALUES "
                + ", ".join([row] * rows))

    def copy_from_s3(self, staging: str, columns: Sequence[ColumnSpec], prefix: str, iam_role: str) -> Statement:
        """COPY takes no bind parameters: the S3 prefix is generated here and the role ARN comes from settings,
        both written as escaped literals."""
        def literal(value: str) -> str:
            return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"

        return SessionLocalStatement(
            f"COPY {self.quote(staging)} ({self.column_list([c.name for c in columns])}) FROM {literal(prefix)} "
            f"IAM_ROLE {literal(iam_role)} FORMAT AS PARQUET SERIALIZETOJSON"
        )

    def live_text_expression(self, column: ColumnSpec) -> str:
        if column.logical_type is LogicalType.JSON:
            return f"JSON_SERIALIZE({self.quote(column.name)})"  # SUPER does not cast to text
        return super().live_text_expression(column)

    def session_setup(self) -> Statement:
        return Statement("SET timezone TO 'UTC'")

    # ---- staging: session-local, so it may run before the state lock ------------------------------------------
    def create_staging(self, staging: str, columns: Sequence[ColumnSpec]) -> Statement:
        return SessionLocalStatement(super().create_staging(staging, columns).sql)

    def drop_staging(self, staging: str) -> Statement:
        return SessionLocalStatement(super().drop_staging(staging).sql)

    def empty_table(self, relation: str) -> Statement:
        return SessionLocalStatement(super().empty_table(relation).sql)  # unqualified: only staging tables are emptied

    def lock_shared_state(self, schema: str, with_leases: bool = False) -> Statement:
        """The first statement of every transaction that writes a table or the state (see the module's notes);
        ``with_leases`` adds the lease table first, for a connection whose commits renew its leases."""
        tables = ((LOCKS,) if with_leases else ()) + SHARED_STATE_TABLES
        return Statement("LOCK " + ", ".join(self.table(schema, name) for name in tables))

    # ---- the cycle lock: a lease row under LOCK -------------------------------------------------------------
    def lock_table(self, schema: str) -> Statement:
        return Statement(f"LOCK {self.table(schema, LOCKS)}")

    def expire_leases(self, schema: str, lock: str, now: datetime) -> Statement:
        return self._delete_lease(schema, lock, "expires_at", "<", now)


def _remove_uploads(s3: Any, bucket: str, prefix: str) -> None:
    """Delete a load's files from S3. A failure here must not hide the load's own error: it is logged, and the
    files (under a prefix of their own) are left for the bucket's lifecycle rules."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        if listed:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in listed]})
    except (BotoCoreError, ClientError) as error:
        log.warning("The staged files under s3://%s/%s could not be removed (%s): delete them by hand.", bucket,
                    prefix, type(error).__name__)


class RedshiftDestination(Destination):
    dialect = RedshiftDialect()

    def __init__(self, url: URL, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(url, options)
        self.lease_seconds = float(self.options.get("lock_lease_seconds", DEFAULT_LEASE_SECONDS))
        self._connection = self._connect(connect_arguments(url, self.options))
        self._leases: dict[str, tuple[str, str]] = {}  # lock name: (schema, holder)
        self._schema: str | None = None  # whose state tables the transactions begun here lock
        self._lock_pending = False  # begun, and only session-local work done so far
        self.execute(self.dialect.session_setup())
        self._connection.commit()

    def _connect(self, arguments: dict[str, Any]) -> Any:
        import redshift_connector

        try:
            return redshift_connector.connect(**arguments)
        except Exception as error:  # the driver raises its own, socket and AWS errors here
            raise DestinationError(
                f"Cannot connect to Redshift {redact(self.url)} ({type(error).__name__}): check host, port, "
                "database, credentials (or IAM settings) and that TLS is allowed."
            ) from None

    def _cursor_execute(self, statement: Statement) -> Any:
        cursor = self._connection.cursor()
        cursor.execute(statement.sql, statement.params or None)
        return cursor

    def execute(self, statement: Statement) -> int:
        if isinstance(statement, Script):
            counts = [self.execute(part) for part in statement.parts]
            return counts[statement.counted]
        self._lock_before(statement)
        return self._cursor_execute(statement).rowcount

    def query(self, statement: Statement) -> list[tuple[Any, ...]]:
        self._lock_before(statement)
        return [tuple(row) for row in self._cursor_execute(statement).fetchall()]

    def use_schema(self, schema: str) -> None:
        self._schema = schema

    def begin(self) -> None:
        self._connection.commit()  # the driver opens a transaction at the first statement; start clean
        self._lock_pending = self._schema is not None

    def _lock_before(self, statement: Statement) -> None:
        """Before the transaction's first statement that is not session-local: commit the staging done so far (the
        temporary tables keep their rows) and open the writing transaction with the state lock."""
        if self._lock_pending and not isinstance(statement, SessionLocalStatement):
            self._lock_pending = False
            assert self._schema is not None
            self._connection.commit()
            self._cursor_execute(self.dialect.lock_shared_state(self._schema, with_leases=bool(self._leases)))

    def commit(self) -> None:
        self._lock_pending = False
        self._renew_leases()
        self._connection.commit()

    def _renew_leases(self) -> None:
        """Push back the expiry of every lease this connection holds (in the open transaction)."""
        for lock, (schema, holder) in self._leases.items():
            self.execute(self.dialect.renew_lease(schema, lock, holder, self._expiry()))

    def rollback(self) -> None:
        self._lock_pending = False
        self._connection.rollback()

    def load(self, staging: str, columns: Sequence[ColumnSpec], batches: Iterable[pa.RecordBatch]) -> int:
        if self.options.get("s3_bucket") and self.options.get("iam_role"):
            return self._load_from_s3(staging, columns, batches)
        rows = 0
        for chunk in row_chunks(batches, columns):
            sql = self.dialect.insert_values(staging, columns, len(chunk))
            self._cursor_execute(Statement(sql, tuple(value for row in chunk for value in row)))
            rows += len(chunk)
        return rows

    def _load_from_s3(self, staging: str, columns: Sequence[ColumnSpec], batches: Iterable[pa.RecordBatch]) -> int:
        import boto3

        bucket = str(self.options["s3_bucket"])
        prefix = f"{str(self.options.get('s3_prefix', 'cdc_sync')).strip('/')}/{uuid.uuid4().hex}/"
        directory = Path(tempfile.mkdtemp(prefix="cdc_sync_rs_"))
        s3 = boto3.client("s3", region_name=self.options.get("region"))
        rows = 0
        try:
            for number, batch in enumerate(batches):
                if not batch.num_rows:
                    continue
                path = directory / f"part_{number:06d}.parquet"
                pq.write_table(pa.Table.from_batches([fit_batch(batch, columns)]), path)
                s3.upload_file(str(path), bucket, prefix + path.name)
                path.unlink()
                rows += batch.num_rows
            if rows:
                self.execute(self.dialect.copy_from_s3(staging, columns, f"s3://{bucket}/{prefix}",
                                                       str(self.options["iam_role"])))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
            _remove_uploads(s3, bucket, prefix)
        return rows

    # ---- lock ---------------------------------------------------------------------------------------------------
    def _expiry(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.lease_seconds)

    def try_lock(self, schema: str, table: str | None = None) -> bool:
        """A lease row per lock (the schema's or one table's), taken under ``LOCK`` in a transaction of its own;
        taking one renews the others this connection holds."""
        self._connection.commit()
        if table is None:
            self.ensure_schema(schema)
        self.execute(self.dialect.create_lock_table(schema))
        self._connection.commit()
        holder, lock = uuid.uuid4().hex, lease_name(schema.lower(), table and table.lower())
        try:
            self.execute(self.dialect.lock_table(schema))
            self.execute(self.dialect.expire_leases(schema, lock, datetime.now(UTC)))
            if self.query(self.dialect.lease_holder(schema, lock)):
                self._connection.rollback()
                return False
            self.execute(self.dialect.insert_row(schema, LOCKS, {"lock_name": lock, "holder": holder,
                                                                 "expires_at": self._expiry()}))
            self._renew_leases()
            self._connection.commit()
        except BaseException:
            self._connection.rollback()
            raise
        self._leases[lock] = (schema, holder)
        return True

    def unlock(self, schema: str, table: str | None = None) -> None:
        lock = lease_name(schema.lower(), table and table.lower())
        if lock in self._leases:
            self._connection.rollback()
            self.execute(self.dialect.lock_table(schema))  # its DELETE reads the table: first, as for taking one
            self.execute(self.dialect.release_lease(schema, lock, self._leases.pop(lock)[1]))
            self._connection.commit()

    def close(self) -> None:
        self._connection.close()
