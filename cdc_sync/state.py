"""Watermarks and run history, kept in the destination schema next to the mirrored tables.

The watermark of a table is written in the same transaction as its data, so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime

from cdc_sync.destinations.base import Destination
from cdc_sync.errors import StateError
from cdc_sync.migrations import MIGRATIONS_TABLE, MIGRATIONS_TABLE_COLUMNS, load_migrations

WATERMARKS = "_cdc_watermarks"
RUNS = "_cdc_runs"
META = "_cdc_meta"
SOURCE_IDENTITY_KEY = "source_identity"


@dataclass
class Watermark:
    table_name: str
    strategy: str
    cursor_column: str | None = None
    high_water_mark: str | None = None
    pending_high_water_mark: str | None = None
    pending_read_at: datetime | None = None
    merge_key: str | None = None
    delete_mode: str | None = None
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    last_rows_read: int | None = None
    last_rows_written: int | None = None
    last_rows_deleted: int | None = None
    live_rows: int | None = None
    lag_seconds: float | None = None
    last_error: str | None = None
    row_version: str | None = None
    # The merge key (JSON array) of a source row whose cursor reached high_water_mark: the reset check's first look.
    mark_row_key: str | None = None
    # Source columns added to the mirror whose values older rows lack (JSON array), remembered before the column
    # DDL: while set, the table is re-read in full. Cleared by the cycle that commits the backfill.
    backfill_columns: str | None = None
    # The source's count of rows deleted from the table when its delete check last ran (PostgreSQL's n_tup_del):
    # unchanged since, no row was deleted, and equal row counts prove equal key sets. None where unknown.
    deletes_recorded: str | None = None
    # Log capture: the source LSN (text, e.g. 0/16B3748) up to which the table's changes are in the mirror, written
    # with the data; changes at or below it are skipped when the slot replays them. None in the watermark mode.
    log_position: str | None = None


WATERMARK_COLUMNS = tuple(field.name for field in fields(Watermark))


@dataclass
class RunRecord:
    cycle_id: str
    table_name: str
    started_at: datetime
    finished_at: datetime
    status: str
    strategy: str
    rows_read: int
    rows_written: int
    rows_deleted: int
    seconds: float
    high_water_mark: str | None
    error: str | None


def utc_now() -> datetime:
    return datetime.now(UTC)


class StateStore:
    def __init__(self, destination: Destination, schema: str) -> None:
        self.destination = destination
        self.dialect = destination.dialect
        self.schema = schema

    def migrate(self) -> None:
        """Create the schema and apply pending state migrations, each in its own transaction."""
        destination, dialect = self.destination, self.dialect
        destination.begin()
        destination.ensure_schema(self.schema)
        destination.execute(dialect.create_state_table(self.schema, MIGRATIONS_TABLE, MIGRATIONS_TABLE_COLUMNS, ()))
        destination.commit()
        applied = {
            int(row[0])
            for row in destination.query(dialect.select_all(self.schema, MIGRATIONS_TABLE, ["version"]))
        }
        migrations = load_migrations()
        known = {migration.version for migration in migrations}
        if applied - known:
            raise StateError(
                f"The state tables in schema {self.schema!r} were written by a newer cdc_sync "
                f"(migration {max(applied)}): upgrade cdc_sync before syncing into this schema."
            )
        for migration in migrations:
            if migration.version in applied:
                continue
            destination.begin()
            try:
                for table in migration.tables:
                    destination.execute(
                        dialect.create_state_table(self.schema, table.name, table.columns, table.primary_key)
                    )
                for table_name, column in migration.add_columns:
                    destination.execute(dialect.add_column(self.schema, table_name, column))
                destination.execute(dialect.insert_row(self.schema, MIGRATIONS_TABLE, {
                    "version": migration.version, "description": migration.description, "applied_at": utc_now(),
                }))
                destination.commit()
            except Exception:
                destination.rollback()
                raise

    def exists(self) -> bool:
        return bool(self.destination.scalar(self.dialect.schema_exists(self.schema)))

    def has_state(self) -> bool:
        """Whether a cycle ever wrote its watermark table into this schema."""
        return self.exists() and bool(self.destination.query(self.dialect.table_columns(self.schema, WATERMARKS)))

    def claim_source(self, identity: str, *, allow_foreign: bool) -> None:
        """Bind the schema to one source database, so two Airflow environments never mix in one mirror."""
        rows = self.destination.query(self.dialect.select_all(self.schema, META, ["key", "value"]))
        recorded = dict(rows).get(SOURCE_IDENTITY_KEY)
        if recorded == identity:
            return
        if recorded is not None and not allow_foreign:
            raise StateError(
                f"Schema {self.schema!r} already mirrors another source ({recorded}), not {identity}: choose "
                "another --schema, or pass --allow-foreign-source if this really is the same database moved."
            )
        self.destination.begin()
        self.destination.execute(self.dialect.delete_where(self.schema, META, "key", SOURCE_IDENTITY_KEY))
        self.destination.execute(
            self.dialect.insert_row(self.schema, META, {"key": SOURCE_IDENTITY_KEY, "value": identity})
        )
        self.destination.commit()

    def meta(self) -> dict[str, str]:
        """The schema's ``_cdc_meta`` entries (source identity, hashed columns' digests)."""
        return dict(self.destination.query(self.dialect.select_all(self.schema, META, ["key", "value"])))

    def save_meta(self, key: str, value: str) -> None:
        """Replace one ``_cdc_meta`` entry; call inside the transaction it belongs with."""
        self.destination.execute(self.dialect.delete_where(self.schema, META, "key", key))
        self.destination.execute(self.dialect.insert_row(self.schema, META, {"key": key, "value": value}))

    def watermarks(self) -> dict[str, Watermark]:
        rows = self.destination.query(
            self.dialect.select_all(self.schema, WATERMARKS, WATERMARK_COLUMNS, order_by="table_name")
        )
        return {row[0]: Watermark(*row) for row in rows}

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        columns = tuple(field.name for field in fields(RunRecord))
        rows = self.destination.query(self.dialect.select_all(self.schema, RUNS, columns, order_by="started_at"))
        records = [RunRecord(*row) for row in rows]
        return records[-limit:] if limit else records

    def save_watermark(self, watermark: Watermark) -> None:
        """Replace the table's watermark row; call inside the table's data transaction."""
        self.destination.execute(self.dialect.delete_where(self.schema, WATERMARKS, "table_name", watermark.table_name))
        self.destination.execute(self.dialect.insert_row(self.schema, WATERMARKS, asdict(watermark)))

    def record_run(self, run: RunRecord) -> None:
        self.destination.execute(self.dialect.insert_row(self.schema, RUNS, asdict(run)))

    def record_alone(self, run: RunRecord) -> None:
        """A run record in a transaction of its own (a table left to another cycle: no watermark is touched)."""
        self.destination.begin()
        try:
            self.record_run(run)
            self.destination.commit()
        except Exception:
            self.destination.rollback()
            raise

    def record_failure(self, watermark: Watermark, run: RunRecord) -> None:
        """After a rolled-back table: keep the old high-water mark, note the error, in a transaction of its own."""
        self.destination.begin()
        try:
            self.save_watermark(watermark)
            self.record_run(run)
            self.destination.commit()
        except Exception:
            self.destination.rollback()
            raise


