"""The xmin comparison behind the change detector, checked by PostgreSQL itself across the 2^32 wraparound."""

from __future__ import annotations

import psycopg
import pytest

from cdc_sync.sources.postgres import ROW_VERSION_PREDICATE
from tests.airflow_schema import PG_ADMIN

CASES = [
    (1000, 1000, True),  # written by the very transaction the last read could not see
    (1001, 1000, True),  # newer
    (999, 1000, False),  # older: the last read saw it
    (5, 4294967290, True),  # newer, after the 32-bit counter wrapped
    (4294967290, 5, False),  # older, from before the wrap
    (2, 4294967290, False),  # frozen: old by definition, never re-read
]


@pytest.mark.parametrize(("row_xid", "since", "expected"), CASES)
def test_row_version_predicate_orders_xids_like_postgresql(postgres_available, row_xid: int, since: int,
                                                           expected: bool) -> None:
    sql = f"SELECT {ROW_VERSION_PREDICATE} FROM (SELECT %s::text::xid AS xmin) AS row_version"
    with psycopg.connect(PG_ADMIN) as connection:
        (result,) = connection.execute(sql, (since, str(row_xid))).fetchone()
    assert result is expected
