"""Snowflake destination: full sync scenarios through fakesnow (in-process), plus the strict rules fakesnow skips.

fakesnow accepts duplicate source keys in MERGE, folds identifiers loosely and rolls DDL back inside transactions;
real Snowflake does none of these, so the statements this destination sends are also checked against those rules.
Where concurrent writers of one table meet, the tests restore Snowflake's waiting (tests/fakesnow_rules.py).
"""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
import sqlglot
from sqlglot import exp

import cdc_sync
from cdc_sync import table_turns
from cdc_sync.destinations.dialect import LOCKS, ColumnSpec, Statement
from cdc_sync.destinations.snowflake import SnowflakeDestination, SnowflakeDialect
from cdc_sync.destinations.snowflake_settings import connect_arguments, snowflake_settings_from_connection
from cdc_sync.errors import ConfigError
from cdc_sync.types import LogicalType
from tests.fakesnow_rules import make_blocking_dml_wait
from tests.lease_checks import check_table_leases

fakesnow = pytest.importorskip("fakesnow")

SCHEMA = "airflow-qwe123"
TABLES = ["dag", "dag_run", "task_instance", "import_error", "log", "dag_tag"]


@pytest.fixture
def snowflake_url(monkeypatch):
    """A fakesnow session per test; returns the destination URL and a recorder of every statement sent.

    fakesnow 0.12.1 emulates MERGE with a temporary table and records a NULL comment for it in another DuckDB
    database, which DuckDB refuses inside a transaction; that bookkeeping of the emulator is skipped here.
    """
    import fakesnow.info_schema

    comment_sql = fakesnow.info_schema.insert_table_comment_sql
    monkeypatch.setattr(fakesnow.info_schema, "insert_table_comment_sql",
                        lambda c, s, t, comment: comment_sql(c, s, t, comment) if comment is not None else "SELECT 1")
    # fakesnow has no TO_NUMBER(…, 'XXXXXXXX') (hex): the key digest reads hex the way DuckDB under it does.
    monkeypatch.setattr(SnowflakeDialect, "HEX_TO_INTEGER", "CAST('0x' || {} AS BIGINT)")
    sent: list[str] = []
    original = SnowflakeDestination._run

    def recording(self, statement):
        sent.append(statement.sql)
        return original(self, statement)

    with fakesnow.patch():
        SnowflakeDestination._run = recording
        undo_waits = make_blocking_dml_wait()  # writers of one table wait for each other, as on Snowflake
        try:
            yield f"snowflake://cdc:secret@acct/MIRROR_{uuid.uuid4().hex[:6]}?warehouse=WH", sent
        finally:
            undo_waits()
            SnowflakeDestination._run = original


def warehouse(url: str):
    """A plain connector session on the mirror, the way a user would query it (schema set, names unquoted)."""
    import snowflake.connector

    database = url.rsplit("/", 1)[1].split("?")[0]
    connection = snowflake.connector.connect(account="acct", user="cdc", password="secret", database=database)
    cursor = connection.cursor()
    cursor.execute(f'USE SCHEMA "{SCHEMA}"')
    return cursor


def count(cursor, sql: str) -> int:
    cursor.execute(sql)
    return cursor.fetchone()[0]


def test_initial_sync_updates_late_commit_and_soft_deletes(airflow3_source, snowflake_url):
    url, sent = snowflake_url
    report = cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=TABLES, lookback_seconds=0)
    assert report.ok, report.failed
    cursor = warehouse(url)
    # Unquoted names resolve to the upper-case tables: what users type.
    assert count(cursor, "SELECT count(*) FROM task_instance") == 200
    assert count(cursor, "SELECT count(*) FROM dag_run WHERE _cdc_deleted_at IS NULL") == 50
    cursor.execute("SELECT conf:run FROM dag_run WHERE run_id = 'scheduled__7'")
    assert str(cursor.fetchone()[0]) == "7"  # JSON arrived as VARIANT, not as a string
    cursor.execute("SELECT executor_config, end_date FROM task_instance WHERE run_id = 'scheduled__1' "
                   "AND task_id = 'task_1'")
    blob, end_date = cursor.fetchone()
    assert bytes(blob) == bytes.fromhex("80059503000000000000007d942e")
    assert end_date.microsecond == 234567  # TIMESTAMP_TZ(6) keeps microseconds

    with psycopg.connect(airflow3_source, autocommit=True) as source:
        source.execute("UPDATE task_instance SET state = 'failed', updated_at = now() "
                       "WHERE run_id = 'scheduled__3' AND task_id = 'task_2'")
        # A late commit: stamped well before the watermark, committed after the first cycle.
        source.execute("INSERT INTO dag_run (dag_id, run_id, run_after, state, run_type, clear_number, updated_at, "
                       "logical_date) VALUES ('dag_1', 'late', now(), 'queued', 'manual', 0, "
                       "now() - interval '3 days', now())")
        source.execute("DELETE FROM task_instance WHERE run_id = 'scheduled__4'")
        source.execute("DELETE FROM dag_run WHERE run_id = 'scheduled__4'")
    report = cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=TABLES, lookback_seconds=4 * 86400)
    assert report.ok, report.failed
    assert count(cursor, "SELECT count(*) FROM task_instance WHERE state = 'failed'") == 1
    assert count(cursor, "SELECT count(*) FROM dag_run WHERE run_id = 'late'") == 1
    assert count(cursor, "SELECT count(*) FROM dag_run") == 51  # soft delete keeps the row
    assert count(cursor, "SELECT count(*) FROM dag_run WHERE _cdc_deleted_at IS NOT NULL") == 1
    assert count(cursor, "SELECT count(*) FROM task_instance WHERE _cdc_deleted_at IS NOT NULL") == 4
    # Re-reading the whole overlap twice wrote no duplicate.
    assert count(cursor, "SELECT count(*) FROM (SELECT dag_id, task_id, run_id, map_index FROM task_instance "
                         "GROUP BY ALL HAVING count(*) > 1)") == 0
    assert_strict_snowflake(sent)


def test_failure_before_commit_loses_nothing_and_duplicates_nothing(airflow3_source, snowflake_url, monkeypatch):
    url, sent = snowflake_url
    assert cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=["dag_run"]).ok
    with psycopg.connect(airflow3_source, autocommit=True) as source:
        source.execute("UPDATE dag_run SET state = 'failed', updated_at = now() WHERE run_id = 'scheduled__9'")
        source.execute("INSERT INTO dag_run (dag_id, run_id, run_after, state, run_type, clear_number, updated_at) "
                       "VALUES ('dag_1', 'new_run', now(), 'queued', 'manual', 0, now())")
    from cdc_sync.state import StateStore

    def crash(self, watermark):
        raise cdc_sync.DestinationError("injected crash before commit")

    save_watermark = StateStore.save_watermark
    monkeypatch.setattr(StateStore, "save_watermark", crash)
    report = cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=["dag_run"], raise_on_failure=False)
    assert not report.ok
    cursor = warehouse(url)
    # The MERGE ran before the crash but was rolled back with it.
    assert count(cursor, "SELECT count(*) FROM dag_run WHERE run_id = 'new_run'") == 0
    assert count(cursor, "SELECT count(*) FROM dag_run WHERE state = 'failed'") == 0
    monkeypatch.setattr(StateStore, "save_watermark", save_watermark)
    assert cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=["dag_run"]).ok
    assert count(cursor, "SELECT count(*) FROM dag_run") == 51
    assert count(cursor, "SELECT count(*) FROM dag_run WHERE state = 'failed'") == 1
    assert_strict_snowflake(sent)


def test_bulk_path_issues_a_bounded_number_of_statements(airflow3_source, snowflake_url):
    url, sent = snowflake_url
    with psycopg.connect(airflow3_source, autocommit=True) as source:
        source.execute("INSERT INTO log (dttm, dag_id, event, owner, extra) SELECT now(), 'dag_1', 'bulk', 'x', "
                       "'row ' || g FROM generate_series(1, 100000) AS g")
    report = cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=["log"])
    assert report.ok and report.tables[0].rows_read == 100030
    assert count(warehouse(url), "SELECT count(*) FROM log") == 100030
    inserts = [s for s in sent if s.upper().startswith("INSERT INTO")]
    assert not [s for s in inserts if " VALUES " in s.upper() and "_CDC_STAGE" in s.upper()]  # no row inserts
    # A first load copies each staged chunk over with one set-based INSERT … SELECT.
    assert len([s for s in inserts if "SELECT" in s.upper() and "_CDC_STAGE" in s.upper()]) == 1
    assert sum(s.startswith("PUT ") for s in sent) == 1
    # A fixed overhead on a fresh schema (lease, the state migrations, the source claim) and a handful per table:
    # nothing grows with the 100,030 rows.
    assert len(sent) < 75, "\n".join(sent)


def test_cycle_lock_is_a_lease(snowflake_url):
    url, _ = snowflake_url
    first = SnowflakeDestination(cdc_sync.urls.parse_url(url, role="destination"))
    second = SnowflakeDestination(cdc_sync.urls.parse_url(url, role="destination"), {"lock_lease_seconds": 0})
    try:
        assert first.try_lock(SCHEMA)
        assert not SnowflakeDestination(cdc_sync.urls.parse_url(url, role="destination")).try_lock(SCHEMA)
        first.unlock(SCHEMA)
        assert second.try_lock(SCHEMA)  # a lease of zero seconds is expired at once, as a crashed cycle's would be
        assert first.try_lock(SCHEMA)
    finally:
        first.close()
        second.close()


def test_table_leases_are_independent_of_each_other_and_of_the_schema_lease(snowflake_url):
    url, sent = snowflake_url
    first = SnowflakeDestination(cdc_sync.urls.parse_url(url, role="destination"))
    second = SnowflakeDestination(cdc_sync.urls.parse_url(url, role="destination"))
    try:
        check_table_leases(first, second, SCHEMA)
    finally:
        first.close()
        second.close()
    assert_strict_snowflake(sent)


def race_for_lease(url: str, contenders: int, table: str) -> list[bool]:
    """``contenders`` cycles, each on a connection and thread of its own, ask for one table's lease at once."""
    destinations = [SnowflakeDestination(cdc_sync.urls.parse_url(url, role="destination"))
                    for _ in range(contenders)]
    start = threading.Barrier(contenders, timeout=60)
    taken: list[bool | None] = [None] * contenders

    def contend(number: int) -> None:
        start.wait()
        taken[number] = destinations[number].try_lock(SCHEMA, table)

    threads = [threading.Thread(target=contend, args=(number,)) for number in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    winners = [destination for destination, won in zip(destinations, taken, strict=True) if won]
    for destination in winners:
        destination.unlock(SCHEMA, table)
    for destination in destinations:
        destination.close()
    assert None not in taken  # every contender answered
    return taken  # type: ignore[return-value]


def test_of_cycles_racing_for_one_lease_exactly_one_takes_it(snowflake_url):
    """Snowflake enforces no primary key, so the lease cannot rest on one, nor on MERGEs waiting for each other
    (Snowflake says only that they "generally" do; the rules here let them run side by side, and make UPDATE and
    DELETE wait as Snowflake does). Six cycles race for a new lease, for a released one, and for one whose holder
    died (expired): each time exactly one takes it."""
    url, sent = snowflake_url
    setup = SnowflakeDestination(cdc_sync.urls.parse_url(url, role="destination"))
    crashed = SnowflakeDestination(cdc_sync.urls.parse_url(url, role="destination"), {"lock_lease_seconds": 0})
    try:
        assert setup.try_lock(SCHEMA)  # the schema and the lock table
        assert race_for_lease(url, 6, "dag").count(True) == 1  # a lock never taken: its row is created in the race
        assert race_for_lease(url, 6, "dag").count(True) == 1  # released by the last winner
        assert crashed.try_lock(SCHEMA, "dag")  # held by a cycle that died: its lease expired at once
        assert race_for_lease(url, 6, "dag").count(True) == 1
        assert race_for_lease(url, 6, "dag_run").count(True) == 1  # once more on a new lock
    finally:
        setup.close()
        crashed.close()
    assert_strict_snowflake(sent)


def assert_strict_snowflake(sent: list[str]) -> None:
    """What real Snowflake enforces and fakesnow does not."""
    in_transaction = False
    for sql in sent:
        verb = sql.split(None, 1)[0].upper()
        if verb == "BEGIN":
            in_transaction = True
        elif verb in {"COMMIT", "ROLLBACK"}:
            in_transaction = False
        elif verb in {"CREATE", "ALTER", "DROP"}:
            assert not in_transaction, f"DDL inside a transaction would commit it on Snowflake: {sql}"
        if verb == "MERGE" and "_CDC_LOCKS" not in sql:
            assert_deduplicated_merge(sql)
        if verb == "CREATE" and "TEMPORARY" in sql:
            assert not sqlglot.parse_one(sql, read="snowflake").this.this.db, "temporary tables are unqualified"


def assert_deduplicated_merge(sql: str) -> None:
    merge = sqlglot.parse_one(sql.replace("%s", "NULL"), read="snowflake")
    assert isinstance(merge, exp.Merge)
    source = merge.args["using"]
    assert isinstance(source, exp.Subquery), "MERGE source must be a deduplicating subquery"
    windows = list(source.find_all(exp.Window))
    assert windows and isinstance(windows[0].this, exp.RowNumber)
    on_columns = {c.name for c in merge.args["on"].find_all(exp.Column) if c.table == "t"}
    partition = {c.name for c in windows[0].args["partition_by"]}
    assert on_columns == partition, "dedup partition must be exactly the MERGE key"


def test_strict_rules_catch_an_undeduplicated_merge():
    with pytest.raises(AssertionError):
        assert_deduplicated_merge('MERGE INTO "S"."T" AS t USING "STAGE" AS s ON t."ID" = s."ID" '
                                  'WHEN NOT MATCHED THEN INSERT ("ID") VALUES (s."ID")')


def test_identifiers_upper_case_and_schema_as_given():
    dialect = SnowflakeDialect()
    assert dialect.table(SCHEMA, "task_instance") == '"airflow-qwe123"."TASK_INSTANCE"'
    stage = dialect.table_stage("mirror", SCHEMA, "_cdc_stage_rows_dag")
    assert stage == '@"MIRROR"."airflow-qwe123".%_CDC_STAGE_ROWS_DAG'
    assert dialect.companion_staging(dialect.staging_name("x" * 300)) == dialect.staging_name("x" * 300, "keys")
    copy = dialect.copy_into("_cdc_stage_rows_t", "@X", [ColumnSpec("conf", LogicalType.JSON),
                                                          ColumnSpec("at", LogicalType.TIMESTAMP_TZ)])
    assert 'PARSE_JSON($1:"conf")' in copy.sql and '$1:"at"::TIMESTAMP_TZ(6)' in copy.sql


def test_settings_from_an_airflow_connection(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"pass phrase")).decode()
    url, options = snowflake_settings_from_connection({
        "login": "loader", "password": "pass phrase", "schema": "airflow",
        "extra": {"account": "xy12345.eu-west-1", "warehouse": "LOAD_WH", "database": "ANALYTICS",
                  "role": "LOADER", "private_key_content": pem},
    })
    assert url.render_as_string(hide_password=False) == (
        "snowflake://loader@xy12345.eu-west-1/ANALYTICS?role=LOADER&warehouse=LOAD_WH")
    arguments = connect_arguments(url, options)
    assert arguments["authenticator"] == "SNOWFLAKE_JWT" and "password" not in arguments
    assert serialization.load_der_private_key(arguments["private_key"], None).key_size == 2048
    key_file = tmp_path / "key.p8"
    key_file.write_text(pem)
    _, file_options = snowflake_settings_from_connection({
        "login": "loader", "password": "wrong", "extra": {"account": "a", "database": "D",
                                                           "private_key_file": str(key_file)}})
    with pytest.raises(ConfigError) as error:
        connect_arguments(url, file_options)
    assert "wrong" not in str(error.value)
    password_url, password_options = snowflake_settings_from_connection(
        {"login": "u", "password": "pw", "extra": {"account": "a", "database": "D", "authenticator": "oauth",
                                                   "token": "t"}})
    assert "pw" not in str(password_url) and password_options == {"password": "pw", "authenticator": "oauth",
                                                                  "token": "t"}



def test_private_key_content_is_read_as_pem_or_as_base64_of_pem() -> None:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from cdc_sync.destinations.snowflake_settings import load_private_key

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"pass phrase"))
    expected = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    assert load_private_key(pem.decode(), "pass phrase") == expected
    assert load_private_key(base64.b64encode(pem).decode(), "pass phrase") == expected


def test_a_table_without_a_key_is_replaced_whole(airflow3_source, snowflake_url):
    """Its DELETE opens the transaction, so the staging table must exist before it (DDL would commit)."""
    url, sent = snowflake_url
    with psycopg.connect(airflow3_source, autocommit=True) as source:
        source.execute("CREATE TABLE no_key (name text, value integer)")
        source.execute("INSERT INTO no_key VALUES ('a', 1), ('b', 2), ('b', 2)")
    assert cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=["no_key"]).ok
    with psycopg.connect(airflow3_source, autocommit=True) as source:
        source.execute("DELETE FROM no_key WHERE name = 'a'")
        source.execute("INSERT INTO no_key VALUES ('c', 3)")
    assert cdc_sync.sync(airflow3_source, url, schema=SCHEMA, tables=["no_key"]).ok
    cursor = warehouse(url)
    cursor.execute("SELECT name, value FROM no_key ORDER BY name")
    assert [(name, int(value)) for name, value in cursor.fetchall()] == [("b", 2), ("b", 2), ("c", 3)]
    assert_strict_snowflake(sent)


def test_cycles_of_disjoint_tables_hold_their_leases_at_the_same_time(airflow3_source, snowflake_url, monkeypatch):
    """Two cycles, one per table, in two threads: each waits inside its table's sync until the other is inside
    its own too, and there both see two table leases. With one lock per schema they could not both get there."""
    url, _ = snowflake_url
    cdc_sync.sync(airflow3_source, url, SCHEMA, tables=["dag"])  # the schema, its state tables, the claim
    inside, leaving = threading.Barrier(2, timeout=60), threading.Barrier(2, timeout=60)
    leases_seen: dict[str, int] = {}
    real_sync_table = table_turns.sync_table

    def sync_table_together(cycle, source, plan, *args):
        inside.wait()
        dialect = cycle.dialect
        rows = cycle.destination.query(Statement(
            f"SELECT count(*) FROM {dialect.table(SCHEMA, LOCKS)} WHERE {dialect.quote('lock_name')} LIKE "
            f"{dialect.placeholder} AND {dialect.quote('holder')} IS NOT NULL", (f"cdc_sync:{SCHEMA}/%",)))
        leases_seen[plan.name] = rows[0][0]
        leaving.wait()
        return real_sync_table(cycle, source, plan, *args)

    monkeypatch.setattr(table_turns, "sync_table", sync_table_together)
    reports, errors = {}, []

    def cycle_of(table: str) -> None:
        try:
            reports[table] = cdc_sync.sync(airflow3_source, url, SCHEMA, tables=[table])
        except BaseException as error:  # surfaced below
            errors.append(error)

    # The strict rules hold per connection: record which connection sent each statement.
    by_connection: dict[int, list[str]] = {}
    recording = SnowflakeDestination._run

    def per_connection(self, statement):
        by_connection.setdefault(id(self), []).append(statement.sql)
        return recording(self, statement)

    SnowflakeDestination._run = per_connection
    try:
        threads = [threading.Thread(target=cycle_of, args=(table,)) for table in ("dag_run", "task_instance")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        SnowflakeDestination._run = recording
    assert not errors, errors
    assert leases_seen == {"dag_run": 2, "task_instance": 2}  # the two held leases (a free row may be there too)
    assert all(report.ok and report.tables[0].status == "ok" for report in reports.values())
    cursor = warehouse(url)
    assert count(cursor, 'SELECT count(*) FROM "_CDC_LOCKS" WHERE HOLDER IS NOT NULL') == 0  # every lease released
    assert count(cursor, "SELECT count(*) FROM _CDC_WATERMARKS") == 3
    assert len(by_connection) >= 4  # two cycles, each with a data connection and a lock connection
    for statements in by_connection.values():
        assert_strict_snowflake(statements)


def test_query_mode_history(airflow3_source, snowflake_url):
    """history=True in the query mode (cdc_sync.history): the scenario of tests/test_history.py, and the statements
    within what real Snowflake accepts (no DDL once the data transaction began)."""
    from tests.test_history import KEY_SQL, query_mode_scenario

    url, sent = snowflake_url

    def read_versions(key: tuple) -> list[tuple]:
        cursor = warehouse(url)
        cursor.execute("SELECT state, _cdc_op, _cdc_valid_from, _cdc_valid_to FROM task_instance__history "
                       f"WHERE {KEY_SQL} ORDER BY _cdc_valid_from, _cdc_valid_to NULLS LAST", key)
        return cursor.fetchall()

    query_mode_scenario(airflow3_source, url, SCHEMA, read_versions)
    assert_strict_snowflake(sent)
