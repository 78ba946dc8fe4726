"""The PostgreSQL source's ADBC reads (cdc_sync.sources.postgres_arrow) against the real server: the same values
and Arrow types as the CSV path for every column of the Airflow schemas, the horizon's own snapshot, a read given up
mid-table, and errors without secrets."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psycopg
import pyarrow as pa
import pytest

import cdc_sync.sources.postgres as postgres_source
from cdc_sync.errors import SourceError
from cdc_sync.sources import open_source
from cdc_sync.sources.postgres_arrow import ArrowReader
from cdc_sync.urls import make_url, parse_url
from tests.airflow_schema import PG_ADMIN, pg_execute, pg_recreate_database

# Every PostgreSQL type the source maps, and those it carries as text, with the values that differ between text and
# binary forms: NULL against the empty string, padding, exact decimals, float4 digits, time zones, byte values.
PROBE_TABLE = """
CREATE TYPE mood AS ENUM ('calm', 'busy');
CREATE TABLE probe (
  id int8 PRIMARY KEY, i2 int2, i4 int4, o oid, f4 float4, f8 float8, b bool, tx text, vc varchar(20),
  bp char(4), nm name, u uuid, n numeric(20, 6), j json, jb jsonb, by bytea, tz timestamptz, ts timestamp,
  d date, iv interval, ints int4[], texts text[], e mood
);
INSERT INTO probe VALUES
  (1, 1, -2, 4294967295, 0.1, 0.1, true, 'x', 'y', 'z', 'nm', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   12345678901234.123456, '{"a": [1, 2]}', '{"b": "c"}', '\\x00ff0a', '2024-01-01 12:00:00.123456+02',
   '2024-01-01 12:00:00.654321', '2024-01-02', '1 year 2 mons 3 days 04:05:06.7', '{1,NULL,3}', '{"a b",""}',
   'busy'),
  (2, NULL, NULL, NULL, 'Infinity', '-Infinity', NULL, '', NULL, NULL, NULL, NULL, NULL, NULL, NULL, '', NULL, NULL,
   NULL, NULL, NULL, NULL, NULL),
  (3, 32767, 2147483647, 0, 3.4e38, 1e-300, false, E'line\\nbreak, "quoted"', 'üñí', 'ab', '', NULL, -0.000001,
   'null', '[]', '\\x', '1970-01-01 00:00:00+00', '0001-01-01 00:00:00', '9999-12-31', '-1 day', '{}', '{NULL}',
   'calm');
"""


@pytest.fixture
def probe_source(postgres_available: None):
    name = f"cdc_arrow_{time.monotonic_ns() % 10**10}"
    url = pg_recreate_database(name)
    pg_execute(PROBE_TABLE, name)
    yield url
    pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _read_both(url: str, monkeypatch: pytest.MonkeyPatch, tables: list[str] | None = None) -> dict[str, tuple]:
    """Every table read whole in one snapshot by each path: {table: (csv, adbc)}."""
    read: dict[str, tuple] = {}
    with open_source(parse_url(url, role="source")) as source:
        names = tables or source.list_tables()
        schemas = source.describe_tables(names)
        with source.snapshot() as snapshot:
            for name, schema in schemas.items():
                monkeypatch.setattr(postgres_source, "ARROW_READ_MIN_BYTES", 1 << 62)
                csv = pa.Table.from_batches(list(snapshot.read_rows(schema)), schema=_schema(schema))
                monkeypatch.setattr(postgres_source, "ARROW_READ_MIN_BYTES", 0)
                adbc = pa.Table.from_batches(list(snapshot.read_rows(schema)), schema=_schema(schema))
                read[name] = (csv, adbc)
    return read


def _schema(table) -> pa.Schema:
    from cdc_sync.types import arrow_schema

    return arrow_schema(table.columns)


def _assert_alike(read: dict[str, tuple]) -> None:
    for name, (csv, adbc) in read.items():
        assert adbc.schema == csv.schema, name
        assert adbc.to_pylist() == csv.to_pylist(), name


def test_every_probe_type_arrives_as_the_csv_path_gives_it(probe_source: str, monkeypatch) -> None:
    read = _read_both(probe_source, monkeypatch)
    _assert_alike(read)
    adbc = read["probe"][1]
    rows = {row["id"]: row for row in adbc.to_pylist()}
    assert adbc.num_rows == 3
    assert rows[1]["o"] == 4294967295 and rows[1]["f4"] == 0.1 and rows[1]["n"] == "12345678901234.123456"
    assert rows[1]["by"] == b"\x00\xff\n" and rows[2]["by"] == b"" and rows[2]["tx"] == "" and rows[2]["vc"] is None
    assert rows[1]["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" and rows[1]["bp"] == "z   "
    assert rows[1]["iv"] == "1 year 2 mons 3 days 04:05:06.7" and rows[1]["e"] == "busy"


def test_every_column_of_the_airflow3_schema_reads_alike(airflow3_source: str, monkeypatch) -> None:
    read = _read_both(airflow3_source, monkeypatch)
    _assert_alike(read)
    assert read["task_instance"][1].num_rows > 0 and read["dag_run"][1].num_rows > 0


@pytest.mark.airflow2
def test_every_column_of_the_airflow2_schema_reads_alike(pg_airflow2_source: str, monkeypatch) -> None:
    read = _read_both(pg_airflow2_source, monkeypatch)
    _assert_alike(read)
    assert read["task_instance"][1].num_rows > 0


def test_adbc_reads_see_the_horizons_snapshot_not_a_later_write(probe_source: str, monkeypatch) -> None:
    """A write committed after the horizon query (between the two connections' starts) is seen by neither."""
    monkeypatch.setattr(postgres_source, "ARROW_READ_MIN_BYTES", 0)
    database = make_url(probe_source).database
    with open_source(parse_url(probe_source, role="source")) as source:
        table = source.describe("probe")
        with source.snapshot() as snapshot:
            with psycopg.connect(PG_ADMIN.replace("dbname=postgres", f"dbname={database}"), autocommit=True) as other:
                other.execute("UPDATE probe SET tx = 'changed' WHERE id = 1")
                other.execute("INSERT INTO probe (id) VALUES (4)")
            seen = pa.Table.from_batches(list(snapshot.read_rows(table))).to_pylist()
            keys = pa.Table.from_batches(list(snapshot.read_keys(table, ("id",)))).column("id").to_pylist()
        assert sorted(row["id"] for row in seen) == [1, 2, 3] and sorted(keys) == [1, 2, 3]
        assert next(row["tx"] for row in seen if row["id"] == 1) == "x"
        with source.snapshot() as later:
            rows = pa.Table.from_batches(list(later.read_rows(table))).to_pylist()
        assert sorted(row["id"] for row in rows) == [1, 2, 3, 4]
        assert next(row["tx"] for row in rows if row["id"] == 1) == "changed"


def test_a_read_given_up_mid_table_does_not_hold_the_snapshots_end(probe_source: str, monkeypatch) -> None:
    """The rest of a slow table is never waited for: the read is cancelled on the server when it is closed."""
    monkeypatch.setattr(postgres_source, "ARROW_READ_MIN_BYTES", 0)
    monkeypatch.setattr("cdc_sync.sources.postgres_arrow.BATCH_SIZE_HINT_BYTES", 1)
    database = make_url(probe_source).database
    # A view whose rows after the first ten take 10 ms each: reading it to the end would take ten minutes.
    pg_execute("CREATE VIEW slow AS SELECT g AS id, (SELECT 1 FROM pg_sleep(0.01) WHERE g > 10) AS late "
               "FROM generate_series(1, 60000) AS g", database)
    finished = threading.Event()
    with open_source(parse_url(probe_source, role="source")) as source:
        table = source.describe("slow")

        def give_up() -> None:
            with source.snapshot() as snapshot:
                rows = snapshot.read_rows(table)
                assert next(rows).num_rows > 0
                rows.close()
            finished.set()

        worker = threading.Thread(target=give_up, daemon=True)
        worker.start()
        worker.join(60)
        assert finished.is_set(), "ending the snapshot waited for the rest of the abandoned read"
        with source.snapshot() as snapshot:  # the ADBC connection is usable again
            assert snapshot.count_rows(source.describe("probe")) == 3


def test_adbc_errors_name_no_secret(probe_source: str, monkeypatch) -> None:
    url = make_url(probe_source).set(username="nobody", password="sekrit-passw0rd-123")
    reader = ArrowReader(url, "host=127.0.0.1 port=5432 user=nobody password=sekrit-passw0rd-123 dbname=x", {})
    with pytest.raises(SourceError) as failure:
        reader.join("00000003-0000001B-1")
    assert "sekrit-passw0rd-123" not in str(failure.value) and "Cannot open the Arrow (ADBC) connection" in str(
        failure.value)
    monkeypatch.setattr(postgres_source, "ARROW_READ_MIN_BYTES", 0)
    with open_source(parse_url(probe_source, role="source")) as source:
        table = source.describe("probe")
        pg_execute("ALTER TABLE probe DROP COLUMN nm", make_url(probe_source).database)
        with source.snapshot() as snapshot, pytest.raises(SourceError, match="SQLSTATE 42703"):
            list(snapshot.read_rows(table))


def test_a_snapshot_id_of_another_form_never_reaches_sql(probe_source: str) -> None:
    reader = ArrowReader(make_url(probe_source), "host=127.0.0.1 user=postgres dbname=postgres", {})
    with pytest.raises(SourceError, match="unexpected form"):
        reader.join("1'; DROP TABLE probe; --")


def test_a_killed_adbc_connection_is_replaced_at_the_next_snapshot(probe_source: str, monkeypatch) -> None:
    """The server ends the ADBC session mid-snapshot: the read fails as a SourceError, ending the snapshot does not
    hide it, and the next snapshot reads on a new connection."""
    monkeypatch.setattr(postgres_source, "ARROW_READ_MIN_BYTES", 0)
    database = make_url(probe_source).database
    with open_source(parse_url(probe_source, role="source")) as source:
        table = source.describe("probe")
        own = source.inner._connection.info.backend_pid
        lost = r"Reading rows of probe.*connection failed"
        with pytest.raises(SourceError, match=lost), source.snapshot() as snapshot:
            assert len(pa.Table.from_batches(list(snapshot.read_rows(table)))) == 3
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                       "WHERE datname = %s AND pid <> %s", (database, own)).fetchone()[0]
            assert killed == 1
            list(snapshot.read_rows(table))
        with source.snapshot() as snapshot:
            assert len(pa.Table.from_batches(list(snapshot.read_rows(table)))) == 3


def test_an_adbc_read_does_not_import_pyarrow_dataset(probe_source: str) -> None:
    """The driver manager's DB-API module imports ``pyarrow.dataset`` and with it ``pyarrow.compute`` (about 90 ms
    on a first load's critical path); the reader uses its low-level API instead. (``pyarrow.compute`` on the read
    path is tests/test_hex_decode.py's concern.)"""
    code = (
        "import sys\n"
        "import cdc_sync.sources.postgres as postgres_source\n"
        "from cdc_sync.sources import open_source\n"
        "from cdc_sync.urls import parse_url\n"
        "postgres_source.ARROW_READ_MIN_BYTES = 0\n"
        f"with open_source(parse_url({probe_source!r}, role='source')) as source:\n"
        "    table = source.describe('probe')\n"
        "    with source.snapshot() as snapshot:\n"
        "        rows = sum(batch.num_rows for batch in snapshot.read_rows(table))\n"
        "print(rows, 'pyarrow.dataset' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["3", "False"]


def test_closing_the_source_ends_its_adbc_session(probe_source: str, monkeypatch) -> None:
    """No session is left on the source once it is closed (a database with one cannot be dropped or copied)."""
    monkeypatch.setattr(postgres_source, "ARROW_READ_MIN_BYTES", 0)
    database = make_url(probe_source).database
    with open_source(parse_url(probe_source, role="source")) as source:
        table = source.describe("probe")
        with source.snapshot() as snapshot:
            assert sum(batch.num_rows for batch in snapshot.read_rows(table)) == 3
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        left = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)).fetchone()[0]
    assert left == 0
