"""The background reader behind every CSV stream: bounded, stops with its caller, and errors surface in the caller."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest

from cdc_sync.sources.csv_stream import csv_batches, read_ahead
from cdc_sync.types import Column, LogicalType


def _reader_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "cdc_sync-read-ahead"]


def test_items_arrive_in_order_and_the_reader_is_joined() -> None:
    assert list(read_ahead(iter(range(1000)), depth=3)) == list(range(1000))
    assert _reader_threads() == []


def test_the_reader_runs_at_most_depth_items_ahead() -> None:
    produced = 0

    def counting() -> Iterator[int]:
        nonlocal produced
        for item in range(100):
            produced += 1
            yield item

    stream = read_ahead(counting(), depth=2)
    assert next(stream) == 0
    # One item taken, two waiting in the hand-off, one held by the blocked reader: never the whole source.
    threading.Event().wait(0.2)
    assert produced <= 4
    stream.close()
    assert _reader_threads() == []


def test_an_error_while_reading_is_raised_in_the_caller_after_the_rows_before_it() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ConnectionResetError("server closed the connection")

    received = []
    with pytest.raises(ConnectionResetError, match="server closed"):
        for item in read_ahead(failing()):
            received.append(item)
    assert received == [1, 2]
    assert _reader_threads() == []


def test_closing_early_stops_and_closes_the_source_on_the_reader_thread() -> None:
    closed_on: list[str] = []

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                n += 1
                yield n
        finally:
            closed_on.append(threading.current_thread().name)

    stream = read_ahead(endless(), depth=2)
    assert [next(stream) for _ in range(5)] == [1, 2, 3, 4, 5]
    stream.close()
    assert closed_on == ["cdc_sync-read-ahead"]
    assert _reader_threads() == []


def test_csv_batches_parse_through_both_stages_and_stop_when_abandoned() -> None:
    columns = (Column("id", LogicalType.INTEGER, nullable=False), Column("name", LogicalType.TEXT))
    rows = (f"{i},name {i}\n".encode() for i in range(200_000))
    batches = csv_batches(rows, columns)
    first = next(batches)
    assert first.schema.field("id").type == pa.int64()
    assert first.column("name")[0].as_py() == "name 0"
    batches.close()
    assert _reader_threads() == []
    total = sum(batch.num_rows for batch in csv_batches((f"{i},x\n".encode() for i in range(200_000)), columns))
    assert total == 200_000
