"""The capture seam (cdc_sync.capture): the query mode reads what the watermark has not passed and returns the
position the watermark may advance to; no database needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from cdc_sync.capture import QueryCapture, capture_for
from cdc_sync.config import build_config
from cdc_sync.plan import plan_table
from cdc_sync.sources import CursorFilter, Horizon, SourceSnapshot
from cdc_sync.state import Watermark
from cdc_sync.types import Column, LogicalType, TableSchema

READ_AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OPEN_WRITER_SINCE = READ_AT - timedelta(minutes=5)


class RecordingSnapshot(SourceSnapshot):
    """Answers every read with one batch of ``ids`` and remembers the filters it was asked for."""

    def __init__(self, horizon: Horizon) -> None:
        self.horizon = horizon
        self.filters: list = []

    def read_rows(self, table, where=None):
        self.filters.append(where)
        yield pa.record_batch({"id": [1, 2]})

    def read_keys(self, table, key):
        raise AssertionError("not used")

    def count_rows(self, table):
        raise AssertionError("not used")


def dag_run_plan():
    schema = TableSchema("dag_run", (
        Column("id", LogicalType.INTEGER, nullable=False, source_type="int4"),
        Column("updated_at", LogicalType.TIMESTAMP_TZ, nullable=True, source_type="timestamptz"),
    ), primary_key=("id",))
    config = build_config(source="postgresql://h/airflow", destination="duckdb:///x.duckdb")
    return plan_table(schema, config)


def test_a_first_read_takes_everything_and_a_later_one_starts_a_lookback_before_the_mark() -> None:
    plan = dag_run_plan()
    assert plan.cursor == "updated_at"
    snapshot = RecordingSnapshot(Horizon(READ_AT, None, True))
    capture = capture_for(snapshot, lookback_seconds=30)
    assert isinstance(capture, QueryCapture) and capture.mode == "query"

    first = capture.changes(plan, capture.start(plan, None, full=False))
    assert first.read_everything and not first.only_rewritten_rows
    assert [batch.num_rows for batch in first.upserts] == [2]
    assert snapshot.filters == [None]

    mark = READ_AT - timedelta(hours=1)
    previous = Watermark("dag_run", "incremental", "updated_at", high_water_mark=mark.isoformat(),
                         merge_key="id")
    later = capture.changes(plan, capture.start(plan, previous, full=False))
    list(later.upserts)
    assert not later.read_everything
    assert snapshot.filters[-1] == CursorFilter("updated_at", mark - timedelta(seconds=30))
    # full=True (a resync) reads everything again whatever the watermark says.
    assert capture.changes(plan, capture.start(plan, previous, full=True)).read_everything


def test_the_position_to_commit_stops_at_the_oldest_open_writer() -> None:
    plan = dag_run_plan()
    capture = QueryCapture(RecordingSnapshot(Horizon(READ_AT, OPEN_WRITER_SINCE, True)), lookback_seconds=30)
    previous = Watermark("dag_run", "incremental", "updated_at",
                         high_water_mark=(READ_AT - timedelta(hours=1)).isoformat(), merge_key="id")
    changes = capture.changes(plan, capture.start(plan, previous, full=False))
    assert changes.position_to_commit(READ_AT).high_water_mark == OPEN_WRITER_SINCE
    earlier = READ_AT - timedelta(minutes=10)
    assert changes.position_to_commit(earlier).high_water_mark == earlier
    # Nothing read: the mark stays where it was.
    assert changes.position_to_commit(None).high_water_mark == READ_AT - timedelta(hours=1)
