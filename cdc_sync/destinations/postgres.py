"""PostgreSQL as a warehouse: ``COPY FROM STDIN`` staging, ``MERGE`` (PostgreSQL 15+), advisory-lock cycles."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv

from cdc_sync.destinations.base import Destination, rows_to_batch
from cdc_sync.destinations.dialect import SYNCED_AT, ColumnSpec, Dialect, Statement
from cdc_sync.errors import DestinationError
from cdc_sync.types import LogicalType
from cdc_sync.urls import URL, postgres_conninfo, redact, scrub

# The second key of the schema lock: a name no Airflow table has (cdc_sync's own tables start with ``_cdc_``).
SCHEMA_LOCK_NAME = "_cdc_schema"


class PostgresDialect(Dialect):
    name = "postgresql"
    TYPE_NAMES = {**Dialect.TYPE_NAMES, LogicalType.JSON: "JSONB"}
    REPORTED_TYPES = {LogicalType.TIMESTAMP: "timestamp without time zone"}

    def copy_into(self, staging: str, columns: Sequence[ColumnSpec]) -> Statement:
        return Statement(
            f"COPY {self.quote(staging)} ({self.column_list([c.name for c in columns])}) FROM STDIN (FORMAT CSV)"
        )

    def copy_into_table(self, schema: str, table: str, columns: Sequence[str]) -> Statement:
        return Statement(f"COPY {self.table(schema, table)} ({self.column_list(columns)}) FROM STDIN (FORMAT CSV)")

    def try_lock(self, schema: str, table: str | None = None) -> Statement:
        """A session advisory lock keyed by two numbers: the schema's, and the table's (or, for the schema lock,
        :data:`SCHEMA_LOCK_NAME`'s). The one-number key is kept for :meth:`try_share_schema`."""
        return Statement("SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))",
                         (f"cdc_sync:{schema}", table or SCHEMA_LOCK_NAME))

    def unlock(self, schema: str, table: str | None = None) -> Statement:
        return Statement("SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))",
                         (f"cdc_sync:{schema}", table or SCHEMA_LOCK_NAME))

    def try_share_schema(self, schema: str) -> Statement:
        """The lock a cdc_sync from before per-table locks held for a whole cycle, exclusively, keyed by one number:
        taken here in shared mode, so cycles of this version hold it together and never with an older one."""
        return Statement("SELECT pg_try_advisory_lock_shared(hashtext(%s))", (f"cdc_sync:{schema}",))

    def unshare_schema(self, schema: str) -> Statement:
        return Statement("SELECT pg_advisory_unlock_shared(hashtext(%s))", (f"cdc_sync:{schema}",))


def hex_bytes(array: pa.Array) -> pa.Array:
    """PostgreSQL reads bytea from CSV as ``\\x`` hex text."""
    return pa.array([None if v is None else "\\x" + v.hex() for v in array.to_pylist()], type=pa.string())


def csv_payload(batch: pa.RecordBatch) -> bytes:
    """A batch as headerless CSV in the form PostgreSQL's COPY reads: NULL unquoted-empty, text always quoted."""
    if any(pa.types.is_binary(field.type) for field in batch.schema):
        arrays = [hex_bytes(a) if pa.types.is_binary(a.type) else a for a in batch.columns]
        batch = pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
    buffer = io.BytesIO()
    pa_csv.write_csv(batch, buffer, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
    return buffer.getvalue()


class PostgresDestination(Destination):
    supports_concurrent_tables = True
    dialect = PostgresDialect()

    def __init__(self, url: URL, options: Mapping[str, Any] | None = None) -> None:
        import psycopg

        super().__init__(url, options)
        try:
            self._connection = psycopg.connect(**{**postgres_conninfo(url), **self.options}, autocommit=False)
        except psycopg.OperationalError as error:
            reason = scrub(" ".join(str(error).split()), url, secrets=self.options.values()) or type(error).__name__
            raise DestinationError(
                f"Cannot connect to the destination {redact(url)}: {reason}. Check host, port, database and "
                "credentials."
            ) from None
        self._connection.execute(self.dialect.session_setup().sql)
        self._connection.commit()

    def _cursor_execute(self, statement: Statement) -> Any:
        return self._connection.execute(statement.sql, statement.params or None)

    def execute(self, statement: Statement) -> int:
        return self._cursor_execute(statement).rowcount

    def query(self, statement: Statement) -> list[tuple[Any, ...]]:
        return self._cursor_execute(statement).fetchall()

    def begin(self) -> None:
        # psycopg opens a transaction at the first statement; make sure none is left over.
        self._connection.commit()

    def commit(self) -> None:
        self._connection.commit()

    def rollback(self) -> None:
        self._connection.rollback()

    def load(self, staging: str, columns: Sequence[ColumnSpec], batches: Iterable[pa.RecordBatch]) -> int:
        rows = 0
        with self._connection.cursor().copy(self.dialect.copy_into(staging, columns).sql) as copy:
            for batch in batches:
                copy.write(csv_payload(batch))
                rows += batch.num_rows
        return rows

    def append(self, schema: str, table: str, staging: str, columns: Sequence[ColumnSpec],
               batches: Iterable[pa.RecordBatch], synced_at: Any, chunk_rows: int = 0) -> int:
        """COPY straight into the mirror table, with the sync time as one more column of each batch."""
        names = [*(c.name for c in columns), SYNCED_AT]
        rows = 0
        with self._connection.cursor().copy(self.dialect.copy_into_table(schema, table, names).sql) as copy:
            for batch in batches:
                stamp = pa.array([synced_at] * batch.num_rows, type=pa.timestamp("us", tz="UTC"))
                copy.write(csv_payload(batch.append_column(SYNCED_AT, stamp)))
                rows += batch.num_rows
        return rows

    def stream(self, statement: Statement, schema: pa.Schema, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """A server-side cursor: the rows stay in PostgreSQL until fetched, one batch at a time."""
        import psycopg

        try:
            with self._connection.cursor(name="cdc_sync_stream") as cursor:
                cursor.execute(statement.sql, statement.params or None)
                while rows := cursor.fetchmany(batch_rows):
                    yield rows_to_batch(rows, schema)
        except psycopg.Error as error:
            raise self._translate(error) from error

    def try_lock(self, schema: str, table: str | None = None) -> bool:
        acquired = bool(self.scalar(self.dialect.try_lock(schema, table)))
        self._connection.commit()
        return acquired

    def unlock(self, schema: str, table: str | None = None) -> None:
        if not self._connection.closed:
            self._connection.rollback()
            self.scalar(self.dialect.unlock(schema, table))
            self._connection.commit()

    def try_share_schema(self, schema: str) -> bool:
        shared = bool(self.scalar(self.dialect.try_share_schema(schema)))
        self._connection.commit()
        return shared

    def unshare_schema(self, schema: str) -> None:
        if not self._connection.closed:
            self._connection.rollback()
            self.scalar(self.dialect.unshare_schema(schema))
            self._connection.commit()

    def close(self) -> None:
        self._connection.close()
