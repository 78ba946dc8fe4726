"""Progress of long reads: plain lines where no terminal watches, bars where one does, and each source's estimate
of a table's rows, all from real cycles."""

from __future__ import annotations

import io
import re
from pathlib import Path

import psycopg
import pytest

import cdc_sync
from cdc_sync.progress import ProgressLines, duration_text
from cdc_sync.sources import open_source
from cdc_sync.urls import parse_url

LINE = re.compile(r"^task_instance: read ([\d,]+)( of ~([\d,]+) rows \((\d+)%\))?.* ([\d,]+) rows/s")


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def _lines_of(lines: list[str], table: str) -> list[str]:
    return [line for line in lines if line.startswith(f"{table}: ")]


def test_plain_lines_show_growing_rows_out_of_the_estimate_then_a_last_line(sqlite_airflow3_source: str,
                                                                             tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import cdc_sync.sources.sqlite as sqlite_source

    monkeypatch.setattr(sqlite_source, "BATCH_ROWS", 40)  # 200 task instances: five batches
    destination = f"duckdb:///{tmp_path}/m.duckdb"
    lines: list[str] = []
    cdc_sync.sync(sqlite_airflow3_source, destination, tables=["dag", "task_instance"],
                  progress=ProgressLines(lines.append, interval=0.0))

    first_load = _lines_of(lines, "task_instance")
    progress, last = first_load[:-1], first_load[-1]
    matches = [LINE.match(line) for line in progress]
    assert all(matches), progress
    rows = [_number(match.group(1)) for match in matches]
    assert rows == [40, 80, 120, 160, 200]  # every batch, growing
    assert {_number(match.group(3)) for match in matches} == {200}  # SQLite's estimate: the count
    assert [int(match.group(4)) for match in matches] == [20, 40, 60, 80, 100]
    assert re.fullmatch(r"task_instance: read 200 rows in \d+s \([\d,]+ rows/s\)", last)
    assert _lines_of(lines, "dag")  # each table its own lines

    # The next cycle runs both tables side by side (lanes) and asks the source for no estimate: task_instance
    # reads changes only (the lookback's few rows), unknown in number; dag is read whole (SQLite has no change
    # detector), estimated by its mirror's live rows.
    estimates: list[str] = []
    estimate_rows = sqlite_source.SQLiteSnapshot.estimate_rows
    monkeypatch.setattr(sqlite_source.SQLiteSnapshot, "estimate_rows",
                        lambda snapshot, table: estimates.append(table.name) or estimate_rows(snapshot, table))
    lines.clear()
    report = cdc_sync.sync(sqlite_airflow3_source, destination, tables=["dag", "task_instance"],
                           progress=ProgressLines(lines.append, interval=0.0), parallel_tables=2)
    assert {item.strategy for item in report.tables} == {"full", "incremental"}
    assert _lines_of(lines, "task_instance") and all(" of ~" not in line for line in _lines_of(lines, "task_instance"))
    assert _lines_of(lines, "dag")[0].startswith("dag: read 5 of ~5 rows (100%)")
    assert estimates == []

    # A resync reads the whole table again: its estimate is the mirror's live rows, known without a query.
    lines.clear()
    cdc_sync.resync(sqlite_airflow3_source, destination, tables=["task_instance"],
                    progress=ProgressLines(lines.append, interval=0.0))
    assert [_number(LINE.match(line).group(3)) for line in lines[:-1]] == [200] * 5
    assert estimates == []


def test_a_read_shorter_than_the_interval_prints_nothing(sqlite_airflow3_source: str, tmp_path: Path) -> None:
    lines: list[str] = []
    cdc_sync.sync(sqlite_airflow3_source, f"duckdb:///{tmp_path}/m.duckdb", tables=["dag", "task_instance"],
                  progress=ProgressLines(lines.append))
    assert lines == []


def test_a_line_every_interval_on_the_clock(sqlite_airflow3_source: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With a clock that moves 4 s per look, a 10 s interval gives a line every third batch or so."""
    import itertools

    import cdc_sync.sources.sqlite as sqlite_source

    monkeypatch.setattr(sqlite_source, "BATCH_ROWS", 20)  # ten batches
    ticks = itertools.count(0, 4.0)
    lines: list[str] = []
    cdc_sync.sync(sqlite_airflow3_source, f"duckdb:///{tmp_path}/m.duckdb", tables=["task_instance"],
                  progress=ProgressLines(lines.append, interval=10.0, clock=lambda: next(ticks)))
    rows = [_number(LINE.match(line).group(1)) for line in lines[:-1]]
    assert 2 <= len(rows) <= 4 and rows == sorted(rows) and rows[-1] < 200
    assert "about" in lines[0] and "left" in lines[0]  # an ETA from the estimate
    assert lines[-1].startswith("task_instance: read 200 rows in ")


def test_bars_show_rows_out_of_the_estimate_while_a_table_is_read(sqlite_airflow3_source: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each frame drawn right after a batch arrives: the table's bar, its rows out of the estimate, and the rate."""
    from rich.console import Console

    import cdc_sync.sources.sqlite as sqlite_source
    from cdc_sync.progress import ReadProgress, TableProgress
    from cdc_sync.progress_bars import ProgressBars

    monkeypatch.setattr(sqlite_source, "BATCH_ROWS", 50)
    console = Console(file=io.StringIO(), force_terminal=True, width=150, record=True)
    bars = ProgressBars(console)
    frames: list[str] = []

    class Drawn(ReadProgress, TableProgress):
        def start(self, table: str, estimate: int | None) -> TableProgress:
            self.bar = bars.start(table, estimate)
            return self

        def advance(self, rows: int) -> None:
            self.bar.advance(rows)
            console.print(bars)
            frames.append(console.export_text())

        def finish(self, rows: int) -> None:
            self.bar.finish(rows)

    cdc_sync.sync(sqlite_airflow3_source, f"duckdb:///{tmp_path}/m.duckdb", tables=["task_instance"],
                  progress=Drawn())
    assert len(frames) == 4
    for rows, frame in zip((50, 100, 150, 200), frames, strict=True):
        assert re.search(rf"task_instance .* {rows} / ~200 rows", frame), frame
    assert "rows/s" in frames[-1]
    console.print(bars)
    assert "task_instance" not in console.export_text()  # a finished read's bar is gone


@pytest.mark.parametrize("engine", ["postgresql", "mysql", "sqlite"])
def test_each_source_estimates_a_tables_rows_from_its_statistics(engine: str,
                                                                  request: pytest.FixtureRequest) -> None:
    fixture = {"postgresql": "airflow3_source", "mysql": "mysql_airflow3_source",
               "sqlite": "sqlite_airflow3_source"}[engine]
    url = request.getfixturevalue(fixture)
    if engine == "postgresql":
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("ANALYZE task_instance")
    if engine == "mysql":
        from tests.airflow_schema import mysql_connect

        database = parse_url(url, role="source").database
        with mysql_connect(database=database) as connection, connection.cursor() as cursor:
            cursor.execute("ANALYZE TABLE task_instance")
    with open_source(parse_url(url, role="source")) as source, source.snapshot() as snapshot:
        table = source.describe("task_instance")
        exact = snapshot.count_rows(table)
        estimate = snapshot.estimate_rows(table)
    assert exact == 200
    if engine == "mysql":
        assert estimate is not None and exact / 2 <= estimate <= exact * 2  # InnoDB samples pages
    else:
        assert estimate == exact


def test_durations_read_as_a_person_would_write_them() -> None:
    assert [duration_text(s) for s in (0.4, 42, 185, 3720)] == ["0s", "42s", "3m05s", "1h02m"]
