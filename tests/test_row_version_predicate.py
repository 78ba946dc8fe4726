"""The xmin comparison behind the change detector, checked by PostgreSQL itself across the 2^32 wraparound."""

from __future__ import annotations

import psycopg
import pytest

from cdc_sync.sources import SeenRowVersions
from cdc_sync.sources.postgres import ROW_VERSION_PREDICATE, row_version_parameters
from tests.airflow_schema import PG_ADMIN

# (row's xmin, what the last read saw as "xmin:xmax:in progress", whether the row is new to it)
CASES = [
    (1000, "990:1000:", True),  # written by the first transaction the last read could not see
    (1001, "990:1000:", True),  # newer
    (999, "990:1000:", False),  # older and not in progress: the last read saw it
    (995, "990:1000:993,995", True),  # in progress during the last read, committed since
    (993, "990:1000:995", False),  # committed before the last read, whose other writer was still open
    (5, "4294967280:4294967290:", True),  # newer, after the 32-bit counter wrapped
    (4294967295 + 7, "4294967280:4294967295:", True),  # ids are 64-bit in the snapshot, 32-bit in xmin
    (4294967290, "4294967280:4294967296:", False),  # older, from before the wrap
    (2, "4294967280:4294967290:", False),  # frozen: old by definition, never re-read
    (1000, "1000", True),  # a bare number, as earlier versions stored: from that transaction on
    (999, "1000", False),
]


@pytest.mark.parametrize(("row_xid", "seen", "expected"), CASES)
def test_row_version_predicate_orders_xids_like_postgresql(postgres_available, row_xid: int, seen: str,
                                                           expected: bool) -> None:
    sql = f"SELECT {ROW_VERSION_PREDICATE} FROM (SELECT %s::text::xid AS xmin) AS row_version"
    with psycopg.connect(PG_ADMIN) as connection:
        parameters = row_version_parameters(SeenRowVersions.parse(seen))
        (result,) = connection.execute(sql, (*parameters, str(row_xid % 2**32))).fetchone()
    assert result is expected


def test_seen_row_versions_keep_postgresql_snapshot_text() -> None:
    seen = SeenRowVersions.parse("4294967300:4294967310:4294967301,4294967305")
    assert (seen.xmin, seen.xmax, seen.in_progress) == (4294967300, 4294967310, (4294967301, 4294967305))
    assert str(seen) == "4294967300:4294967310:4294967301,4294967305"
    assert SeenRowVersions.parse(str(SeenRowVersions(7, 9))) == SeenRowVersions(7, 9)


# (snapshot as taken, ids from its xmin to its xmax still in progress just after it, the snapshot a read keeps)
SUBTRANSACTION_CASES = [
    ("100:110:", set(), "100:110:"),  # nothing was in progress: nothing to add
    ("100:110:100,105", {100, 101, 103, 105, 107}, "100:110:100,101,103,105,107"),  # savepoints of 100 and 105
    ("100:110:100,105", {100, 101}, "100:106:100,101,105"),  # 105 ended before the check: ids after it are unseen
    ("100:110:100,105", {101, 105}, "100:101:100"),  # 100 ended before the check: its savepoints are unknown
    ("100:110:100,105", None, "100:101:100"),  # the range was too wide to check: every id after 100 is unseen
]


@pytest.mark.parametrize(("taken", "still_in_progress", "kept"), SUBTRANSACTION_CASES)
def test_savepoints_of_open_transactions_count_as_unseen(taken: str, still_in_progress: set[int] | None,
                                                         kept: str) -> None:
    assert str(SeenRowVersions.parse(taken).with_subtransactions(still_in_progress)) == kept
