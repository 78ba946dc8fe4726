"""Redshift's SERIALIZABLE rule: every transaction that writes a table or the state opens with the state ``LOCK``.

Redshift checks serializability per table, so two tables' transactions that both read and write
``_cdc_watermarks`` would abort one with error 1023 unless each takes ``LOCK`` of the shared state tables before its
snapshot (the first statement). The shape of every transaction is checked with sqlglot's Redshift parser on what a
cycle really sends; then concurrent table cycles through the real driver and the loopback proxy, on a PostgreSQL
database whose transactions are SERIALIZABLE too (its snapshot is also taken at the first statement after a
``LOCK``), show that the locked sections never overlap, no transaction fails to serialize, and the mirror and its
state are exact. Real Redshift is not run here.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

import psycopg
import pytest
import sqlglot
from sqlglot import exp

import cdc_sync
from cdc_sync.destinations.redshift import SHARED_STATE_TABLES, RedshiftDestination
from cdc_sync.replicate import TableCycle
from cdc_sync.state import WATERMARKS
from tests.mirror_check import AIRFLOW_KEYS, assert_mirrored
from tests.test_redshift import SCHEMA, TABLES
from tests.test_redshift_driver import NO_TLS, driver_url, proxy  # noqa: F401 (fixtures)
from tests.test_redshift_driver import rows as mirror_rows

# Rows of these tables are bookkeeping with rules of their own: lease rows are taken under ``LOCK _cdc_locks`` in
# transactions of their own, and migrations run once per upgrade under the schema lease.
OWN_RULES = {"_cdc_locks", "_cdc_migrations"}
WRITES = (exp.Insert, exp.Delete, exp.Update, exp.Merge)
DDL = (exp.Create, exp.Alter, exp.Drop, exp.TruncateTable)


@dataclass
class Event:
    connection: int
    kind: str  # "sql", "error" (a statement that failed), "commit" or "rollback"
    sql: str
    started: float
    finished: float


@dataclass
class Recorder:
    """What each Redshift connection sent, with commits and rollbacks, in order."""

    events: list[Event] = field(default_factory=list)

    def transactions(self) -> list[tuple[list[Event], Event]]:
        """Per connection, the statements of each transaction and the commit or rollback that ended it."""
        open_statements: dict[int, list[Event]] = {}
        ended = []
        for event in self.events:
            if event.kind == "sql":
                open_statements.setdefault(event.connection, []).append(event)
            elif event.kind in ("commit", "rollback") and open_statements.get(event.connection):
                ended.append((open_statements.pop(event.connection), event))
        return ended


class RecordedConnection:
    """The driver's connection, with its commits and rollbacks noted."""

    def __init__(self, inner, recorder: Recorder) -> None:
        self._inner, self._recorder = inner, recorder

    def _note(self, kind: str, started: float) -> None:
        self._recorder.events.append(Event(id(self), kind, "", started, time.monotonic()))

    def commit(self) -> None:
        started = time.monotonic()
        self._inner.commit()
        self._note("commit", started)

    def rollback(self) -> None:
        started = time.monotonic()
        self._inner.rollback()
        self._note("rollback", started)

    def __getattr__(self, name):
        return getattr(self._inner, name)


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    recorded = Recorder()
    connect, execute = RedshiftDestination._connect, RedshiftDestination._cursor_execute

    def recording_connect(self, arguments):
        return RecordedConnection(connect(self, arguments), recorded)

    def recording_execute(self, statement):
        started = time.monotonic()
        try:
            cursor = execute(self, statement)
        except Exception:
            recorded.events.append(Event(id(self._connection), "error", statement.sql, started, time.monotonic()))
            raise
        recorded.events.append(Event(id(self._connection), "sql", statement.sql, started, time.monotonic()))
        return cursor

    monkeypatch.setattr(RedshiftDestination, "_connect", recording_connect)
    monkeypatch.setattr(RedshiftDestination, "_cursor_execute", recording_execute)
    return recorded


def target(sql: str) -> tuple[type, exp.Table | None]:
    """The kind of statement and the table it writes (None for reads and others)."""
    tree = sqlglot.parse_one(sql.replace("%s", "NULL"), read="redshift")
    if not isinstance(tree, WRITES + DDL) or str(tree.args.get("kind", "TABLE")).upper() != "TABLE":
        return type(tree), None  # reads, LOCK, and DDL of schemas
    written = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
    return type(tree), written if isinstance(written, exp.Table) else None


def must_lock(sql: str) -> bool:
    """Whether ``sql`` writes a permanent table that needs the state lock: rows of a mirror or state table, or a
    mirror's DDL. Unqualified tables are the session's temporary staging tables."""
    kind, table = target(sql)
    if table is None or not table.db or table.name in OWN_RULES:
        return False
    return issubclass(kind, WRITES) or not table.name.startswith("_cdc_")


def touches_permanent_table(sql: str) -> bool:
    """Whether ``sql`` names a schema-qualified table (not the catalog's): a mirror, the state, or their lock."""
    tree = sqlglot.parse_one(sql.replace("%s", "NULL"), read="redshift")
    if isinstance(tree, exp.Command):
        return " ".join(sql.split()[:1]).upper() == "LOCK"
    return any(table.db and table.db not in ("information_schema", "pg_catalog") for table in tree.find_all(exp.Table))


def is_state_lock(sql: str) -> bool:
    tree = sqlglot.parse_one(sql, read="redshift")
    words = tree.sql(dialect="redshift").replace('"', "").split(None, 1)
    locked = [name.strip().rsplit(".", 1)[-1] for name in words[1].split(",")] if len(words) == 2 else []
    return words[0].upper() == "LOCK" and tuple(locked) == SHARED_STATE_TABLES


def writing_transactions(recorder: Recorder) -> list[tuple[list[Event], Event]]:
    return [(statements, end) for statements, end in recorder.transactions()
            if any(must_lock(event.sql) for event in statements)]


def test_every_writing_transaction_opens_with_the_state_lock(airflow3_source, driver_url, recorder):  # noqa: F811
    url, _ = driver_url
    assert cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=TABLES, destination_options=NO_TLS).ok
    with psycopg.connect(airflow3_source, autocommit=True) as source:
        source.execute("UPDATE task_instance SET state = 'failed', updated_at = now() WHERE task_id = 'task_1'")
        source.execute("DELETE FROM log WHERE id IN (SELECT id FROM log ORDER BY id LIMIT 3)")
    second = cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=TABLES, destination_options=NO_TLS)
    assert second.ok and sum(t.rows_deleted for t in second.tables) == 3, second
    writing = writing_transactions(recorder)
    # Each table twice (its data and state) and the source claim.
    assert len(writing) >= 2 * len(TABLES) + 1
    for statements, end in writing:
        assert is_state_lock(statements[0].sql), [event.sql[:80] for event in statements]
        assert sum(is_state_lock(event.sql) for event in statements) == 1
        assert end.kind == "commit"
    # The lease rows: taken and released in transactions that open with LOCK of the lease table.
    leases = [statements for statements, _ in recorder.transactions()
              if any(target(e.sql)[1] is not None and target(e.sql)[1].name == "_cdc_locks"
                     and issubclass(target(e.sql)[0], WRITES) for e in statements)]
    assert len(leases) >= 2 * (1 + len(TABLES))  # each cycle's schema and table leases, taken and released
    for statements in leases:
        assert statements[0].sql == 'LOCK "airflow-qwe123"."_cdc_locks"', [e.sql[:60] for e in statements]
    staged_first = [statements for statements, _ in writing if "TEMPORARY TABLE" in statements[0].sql]
    assert not staged_first  # the staging before the lock was committed apart: the lock is always first
    # The incremental cycle staged task_instance's changes before taking the lock.
    second_ti = [statements for statements, _ in writing if any(
        "DELETE FROM" in e.sql and '"task_instance" USING' in e.sql for e in statements)]
    staging_load = 'INSERT INTO "_cdc_stage_rows_task_instance"'
    assert second_ti and not any(e.sql.startswith(staging_load) for e in second_ti[-1])
    assert any(e.sql.startswith(staging_load) for e in recorder.events)


def test_concurrent_table_cycles_take_turns_only_at_the_state_lock(airflow3_source, driver_url, recorder,  # noqa: F811
                                                                   monkeypatch):
    url, pg = driver_url
    database = pg.rsplit("/", 1)[1]
    with psycopg.connect(pg, autocommit=True) as connection:  # a database of this test's own
        connection.execute(f'ALTER DATABASE "{database}" SET default_transaction_isolation TO serializable')
    assert cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=TABLES, destination_options=NO_TLS).ok
    with psycopg.connect(airflow3_source, autocommit=True) as source:
        source.execute("UPDATE task_instance SET state = 'failed', updated_at = now() WHERE task_id = 'task_1'")
        source.execute("UPDATE dag_run SET state = 'failed', updated_at = now() WHERE run_id = 'scheduled__2'")
        source.execute("DELETE FROM log WHERE id IN (SELECT id FROM log ORDER BY id LIMIT 3)")
        source.execute("UPDATE dag SET is_paused = NOT is_paused")
    recorder.events.clear()

    # The cycles meet before each one's first statement on a permanent table, so their writing transactions all
    # start together: only a lock can make them take turns.
    changed = ["dag", "dag_run", "task_instance", "log"]
    meet = threading.Barrier(len(changed))
    in_table = threading.local()
    run, execute = TableCycle.run, RedshiftDestination._cursor_execute

    def table_run(self, *args, **kwargs):
        in_table.arriving = not getattr(in_table, "met", False)  # once: a retried attempt does not meet again
        return run(self, *args, **kwargs)

    def meeting_execute(self, statement):
        if getattr(in_table, "arriving", False) and touches_permanent_table(statement.sql):
            in_table.arriving, in_table.met = False, True
            meet.wait(timeout=30)
        return execute(self, statement)

    monkeypatch.setattr(TableCycle, "run", table_run)
    monkeypatch.setattr(RedshiftDestination, "_cursor_execute", meeting_execute)
    start = threading.Barrier(len(changed))
    reports, errors = {}, []

    def one_table(table: str) -> None:
        try:
            start.wait(timeout=30)
            reports[table] = cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=[table],
                                           destination_options=NO_TLS, lock_wait_seconds=60)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=one_table, args=(table,)) for table in changed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(reports) == len(changed) and all(report.ok for report in reports.values()), reports

    assert not [e.sql for e in recorder.events if e.kind == "error"]  # nothing failed to serialize, nothing retried
    writing = writing_transactions(recorder)
    assert len(writing) >= len(changed)
    # From the moment the first statement returned (the lock is held by then) to the moment the commit was sent
    # (the lock is held until then): sections that take turns cannot overlap even by the clock's readings.
    sections = sorted((statements[0].finished, end.started) for statements, end in writing)
    for (_, first_end), (second_start, _) in itertools.pairwise(sections):
        assert second_start >= first_end, sections  # one locked section at a time

    for table in TABLES:
        # The driver's bytes stand-in divergence (test_redshift_driver.py) aside, every column.
        assert_mirrored(airflow3_source, pg, SCHEMA, table, AIRFLOW_KEYS[table], exclude=("executor_config",))
    state = dict(mirror_rows(pg, f"SELECT table_name, last_error FROM {WATERMARKS}"))
    assert set(TABLES) <= set(state) and not any(state[table] for table in TABLES)
    ok_runs = mirror_rows(pg, "SELECT table_name, count(*) FROM _cdc_runs WHERE status = 'ok' GROUP BY table_name")
    assert dict(ok_runs) == {table: 2 if table in changed else 1 for table in TABLES}
