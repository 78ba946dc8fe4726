"""Choosing the capture mode (cdc_sync.capture_choice): ``auto`` reads the log when the source allows it and otherwise
keeps the watermark mode, saying exactly why and what would enable the log in one info line; ``log`` is refused
early with the fix named. Against the real PostgreSQL server, with roles made for the test and dropped after."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from cdc_sync import sync
from cdc_sync.capture_choice import choose_capture, engine_refusal, source_facts
from cdc_sync.config import build_config
from cdc_sync.errors import ConfigError
from cdc_sync.log_admin import published_tables
from cdc_sync.sources.publication import LogNames, PublishedTable, log_capture_refusal
from tests.airflow_schema import PG_ADMIN

TABLES = ["dag_run", "task_instance"]


def _choice_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.levelno == logging.INFO and record.getMessage().startswith("capture=")]


def _execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


@pytest.fixture
def reader_role(logical_source: str) -> str:
    """A LOGIN role without REPLICATION that may read Airflow's tables (and owns none of them); dropped after."""
    role = f"cdc_auto_{uuid.uuid4().hex[:8]}"
    _execute(logical_source, f'CREATE ROLE "{role}" LOGIN', f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    yield role
    _execute(logical_source, f'DROP OWNED BY "{role}"', f'DROP ROLE "{role}"')


def _config(source: str, destination: str = "duckdb:///unused.duckdb", **options):
    return build_config(source=source, destination=destination, capture="auto", tables=TABLES, **options)


def _published(config) -> list[PublishedTable]:
    return published_tables(config)[0]


def test_an_unknown_capture_mode_is_refused_before_anything_connects() -> None:
    with pytest.raises(ConfigError, match="capture='wal' is not a capture mode: use one of auto, log, query"):
        build_config(source="postgresql://h/airflow", destination="duckdb:///m.duckdb", capture="wal")


def test_the_default_mode_comes_from_the_environment_else_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDC_SYNC_CAPTURE")
    assert build_config(source="postgresql://h/airflow").capture == "auto"
    monkeypatch.setenv("CDC_SYNC_CAPTURE", "log")
    assert build_config(source="postgresql://h/airflow").capture == "log"
    assert build_config(source="postgresql://h/airflow", capture="query").capture == "query"


@pytest.mark.parametrize("destination", ["snowflake://u:p@acct/DB", "redshift://u:p@cluster:5439/dev"])
def test_auto_into_snowflake_or_redshift_stays_in_query_mode_without_asking_the_source(
        destination: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cdc_sync")
    config = _config("postgresql://postgres@127.0.0.1:1/unreachable", destination)  # nothing listens on port 1
    assert choose_capture(config, []).mode == "query"
    engine = make_url(destination).get_backend_name()
    assert _choice_lines(caplog) == [f"capture=auto uses the watermark mode: log capture does not write into {engine} "
                                     "destinations yet (only duckdb, postgresql)"]


def test_auto_on_sqlite_syncs_in_query_mode_and_says_why(sqlite_airflow3_source: str, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cdc_sync")
    report = sync(sqlite_airflow3_source, f"duckdb:///{tmp_path / 'm.duckdb'}", tables=["dag_run"], capture="auto")
    assert report.ok and report.tables[0].rows_written > 0
    assert _choice_lines(caplog) == ["capture=auto uses the watermark mode: log capture reads PostgreSQL's "
                                     "write-ahead log, and this source is SQLite (managed Airflow services such as "
                                     "MWAA, Cloud Composer and Astro do not offer it either)"]


def test_auto_on_mysql_says_why_without_connecting() -> None:
    refusal = engine_refusal(_config("mysql://root@127.0.0.1:1/airflow"))
    assert refusal.startswith("log capture reads PostgreSQL's write-ahead log, and this source is MySQL")


def test_log_on_sqlite_fails_before_the_mirror_exists(sqlite_airflow3_source: str, tmp_path: Path) -> None:
    mirror = tmp_path / "m.duckdb"
    with pytest.raises(ConfigError, match=r"capture=log is not possible: .* this source is SQLite .*\. Fix that, "
                                          r"or use capture=query"):
        sync(sqlite_airflow3_source, f"duckdb:///{mirror}", tables=["dag_run"], capture="log")
    assert not mirror.exists()


def test_auto_reads_the_log_of_a_logical_source_whose_role_may_and_says_so(
        logical_source: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cdc_sync")
    schema = f"auto_{uuid.uuid4().hex[:8]}"
    report = sync(logical_source, f"duckdb:///{tmp_path / 'm.duckdb'}", schema, tables=TABLES, capture="auto")
    assert report.ok
    slot = LogNames.for_schema(schema).slot
    assert _choice_lines(caplog) == [f"capture=auto reads the source's write-ahead log through replication slot "
                                     f"{slot}: the source runs with wal_level=logical, and its role may read the slot"]
    with psycopg.connect(logical_source) as connection:
        assert connection.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                                  (slot,)).fetchone() == (1,)


def test_the_wal_level_check_is_a_function_of_the_servers_answer(logical_source: str) -> None:
    """The server's real facts pass; the same facts with wal_level=replica (a value this shared server cannot be
    restarted into) give the reason and the fix."""
    config = _config(logical_source)
    facts = source_facts(config, _published(config))
    with psycopg.connect(PG_ADMIN) as connection:
        assert facts.wal_level == connection.execute("SHOW wal_level").fetchone()[0] == "logical"
    assert log_capture_refusal(facts) is None
    assert log_capture_refusal(replace(facts, wal_level="replica")).startswith(
        "wal_level is replica; set wal_level=logical and restart the source to use log capture")


def test_a_role_without_replication_gets_query_mode_even_once_an_admin_made_the_slot_and_log_mode_with_it(
        logical_source: str, reader_role: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL lets only REPLICATION roles read a slot, so the admin's setup spares the cycle's role the rights
    to publish Airflow's tables, never REPLICATION. With it, that role reads the admin's slot in log mode."""
    caplog.set_level(logging.INFO, logger="cdc_sync")
    schema = f"auto_{uuid.uuid4().hex[:8]}"
    reader = make_url(logical_source).set(username=reader_role).render_as_string(hide_password=False)
    config = _config(reader, schema=schema)
    assert choose_capture(config, _published(config)).mode == "query"
    assert _choice_lines(caplog)[-1] == (
        f"capture=auto uses the watermark mode: the source role {reader_role} lacks REPLICATION, which PostgreSQL "
        f"requires to read a replication slot: ALTER ROLE {reader_role} WITH REPLICATION (RDS and Aurora: GRANT "
        f"rds_replication TO {reader_role}; Cloud SQL: ALTER USER {reader_role} WITH REPLICATION)")

    from cdc_sync import log_admin  # the admin, as Airflow's own role, runs `cdc-sync capture setup`

    admin_config = _config(logical_source, schema=schema)
    log_admin.setup(admin_config, log_admin.log_names(admin_config))
    assert choose_capture(config, _published(config)).mode == "query"
    assert _choice_lines(caplog)[-1].startswith(
        f"capture=auto uses the watermark mode: the replication slot exists, but the source role {reader_role} lacks "
        "REPLICATION")
    assert re.search(r"; cdc_sync's replication slot of this schema keeps [\d,]+ MiB of WAL on the source: drop "
                     r"it with `cdc-sync capture drop` if the mirror stays in the watermark mode$",
                     _choice_lines(caplog)[-1])

    _execute(logical_source, f'ALTER ROLE "{reader_role}" REPLICATION')  # it still owns no table, may create nothing
    assert choose_capture(config, _published(config)).mode == "log"
    report = sync(reader, f"duckdb:///{tmp_path / 'm.duckdb'}", schema, tables=TABLES, capture="auto")
    assert report.ok and all(table.rows_written > 0 for table in report.tables)
    assert _choice_lines(caplog)[-1].startswith("capture=auto reads the source's write-ahead log")

    # Another table needs the publication altered, which only the tables' owner may do.
    widened = build_config(source=reader, capture="auto", schema=schema, tables=[*TABLES, "job"])
    assert choose_capture(widened, _published(widened)).mode == "query"
    assert f"the source role {reader_role} may not create the publication" in _choice_lines(caplog)[-1]


def test_a_role_that_may_not_drop_the_admins_slot_past_the_bound_is_told_to_ask_an_admin(
        logical_source: str, reader_role: str, tmp_path: Path) -> None:
    """Past max_retained_wal, a watermark-mode cycle drops the slot nothing reads; a role without REPLICATION may
    not (PostgreSQL's rule), so the cycle goes on and its warning names the admin's command. The slot stays."""
    schema = f"auto_{uuid.uuid4().hex[:8]}"
    from cdc_sync import log_admin

    admin_config = _config(logical_source, schema=schema)
    log_admin.setup(admin_config, log_admin.log_names(admin_config))
    _execute(logical_source, "CREATE TABLE wal_filler AS SELECT g, md5(g::text) FROM generate_series(1, 20000) AS g")
    reader = make_url(logical_source).set(username=reader_role).render_as_string(hide_password=False)
    report = sync(reader, f"duckdb:///{tmp_path / 'm.duckdb'}", schema, tables=TABLES, capture="auto",
                  max_retained_wal=1 << 20)
    assert report.ok and all(table.rows_written > 0 for table in report.tables)
    slot = LogNames.for_schema(schema).slot
    [warning] = [w for w in report.warnings if slot in w]
    assert re.fullmatch(
        rf"cdc_sync's replication slot {slot} keeps [\d,]+ MiB of WAL on the source, over max_retained_wal \(1 MiB\), "
        r"and nothing advances it while cycles run in the watermark mode, but it could not be dropped \(.*must be "
        r"superuser or replication role.*\): an admin should run `cdc-sync capture drop`\.", warning, re.DOTALL)
    with psycopg.connect(logical_source) as connection:
        assert connection.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                                  (slot,)).fetchone()[0] == 1


def test_query_says_nothing_and_asks_the_source_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cdc_sync")
    config = build_config(source="postgresql://127.0.0.1:1/unreachable", destination="duckdb:///m.duckdb",
                          capture="query")
    assert choose_capture(config, []).mode == "query"
    assert _choice_lines(caplog) == []


def test_auto_falls_back_when_the_capability_check_itself_fails(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cdc_sync")
    config = _config("postgresql://postgres@127.0.0.1:1/unreachable")
    assert choose_capture(config, []).mode == "query"
    [line] = _choice_lines(caplog)
    assert line.startswith("capture=auto uses the watermark mode: the capability check failed (Connecting for log "
                           "capture")


def test_the_operator_refuses_an_unknown_capture_mode() -> None:
    pytest.importorskip("airflow")
    from cdc_sync.airflow.operator import AirflowDbSyncOperator

    operator = AirflowDbSyncOperator(task_id="ok", db_type="duckdb", connection_id="main", capture="query")
    assert operator.sync_options["capture"] == "query"
    assert AirflowDbSyncOperator(task_id="dflt", db_type="duckdb", connection_id="main").sync_options["capture"] \
        is None  # build_config then takes CDC_SYNC_CAPTURE, else auto
    with pytest.raises(ConfigError, match="capture='wal' is not a capture mode"):
        AirflowDbSyncOperator(task_id="bad", db_type="duckdb", connection_id="main", capture="wal")


def test_auto_leaves_a_publication_of_another_table_set_alone_even_when_the_race_is_lost(
        logical_source: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A fan-out over tables runs one cycle per table: the first table set to make the publication keeps the log,
    the others take the watermark mode instead of moving the publication back and forth; also when both passed the
    check before either made it (the check is made again under the slot's lock)."""
    from cdc_sync import cycle, log_admin

    caplog.set_level(logging.INFO, logger="cdc_sync")
    schema = f"auto_{uuid.uuid4().hex[:8]}"
    mirror = f"duckdb:///{tmp_path / 'm.duckdb'}"
    assert sync(logical_source, mirror, schema, tables=TABLES, capture="auto").ok
    report = sync(logical_source, mirror, schema, tables=["job"], capture="auto")
    assert report.ok and report.tables[0].rows_written > 0
    assert _choice_lines(caplog)[-1] == (
        "capture=auto uses the watermark mode: cdc_sync's publication of this schema lists dag_run, task_instance, "
        "and this cycle syncs job: one table set reads the log of a schema, and auto leaves the publication to the "
        "cycles of that set (a fan-out over tables takes the watermark mode, except for that set). To move it to "
        "this table set, run `cdc-sync capture setup` with this cycle's table options, or give capture=log")

    # Another schema: the cycle of {dag} passes the check, then a cycle of TABLES makes the publication first.
    schema = f"auto_{uuid.uuid4().hex[:8]}"
    checked = cycle.choose_capture

    def check_then_lose_the_race(config, tables):
        choice = checked(config, tables)
        other = _config(logical_source, schema=schema)
        log_admin.setup(other, log_admin.log_names(other))
        return choice

    monkeypatch.setattr(cycle, "choose_capture", check_then_lose_the_race)
    report = sync(logical_source, mirror, schema, tables=["dag"], capture="auto")
    assert report.ok and report.tables[0].rows_written > 0
    assert _choice_lines(caplog)[-2].startswith("capture=auto reads the source's write-ahead log")
    assert _choice_lines(caplog)[-1].startswith("capture=auto uses the watermark mode: cdc_sync's publication of "
                                                "this schema lists dag_run, task_instance, and this cycle syncs dag")
    config = _config(logical_source, schema=schema)
    assert {table.name for table in log_admin.status(config, log_admin.log_names(config)).tables} == set(TABLES)
