# ruff: noqa: E501  (golden SQL: one case per line, by design)
"""Golden SQL, one line per case, for the four warehouse dialects: the specification of each dialect's text.

No connection is needed. A change to a dialect that alters its SQL must change the line here on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc_sync.destinations.dialect import ColumnSpec, Dialect, lease_name
from cdc_sync.destinations.duckdb import DuckDBDialect
from cdc_sync.destinations.postgres import PostgresDialect
from cdc_sync.destinations.redshift import RedshiftDialect
from cdc_sync.destinations.snowflake import SnowflakeDialect
from cdc_sync.types import LogicalType as L

DIALECTS: dict[str, Dialect] = {d.name: d for d in (DuckDBDialect(), PostgresDialect(), SnowflakeDialect(),
                                                     RedshiftDialect())}
COLUMNS = [ColumnSpec("run_id", L.TEXT), ColumnSpec("conf", L.JSON), ColumnSpec("updated_at", L.TIMESTAMP_TZ),
           ColumnSpec("blob", L.BYTES)]
BUILD = {
    "table": lambda d: d.table("airflow-qwe123", "task_instance"),
    "create_table": lambda d: d.create_table("airflow-qwe123", "dag_run", COLUMNS).sql,
    "add_column": lambda d: d.add_column("airflow-qwe123", "dag_run", ColumnSpec("note", L.TEXT)).sql,
    "create_staging": lambda d: d.create_staging("_cdc_stage_rows_dag_run", COLUMNS[:1]).sql,
    "merge": lambda d: d.merge("airflow-qwe123", "dag_run", "_cdc_stage_rows_dag_run", ["dag_id", "run_id", "state"],
                               ["dag_id", "run_id"], "updated_at", frozenset(), "T").sql,
    "merge_nullable_key": lambda d: d.merge("s", "t", "stage", ["k", "v"], ["k"], None, frozenset({"k"}), "T").sql,
    "merge_rewritten_rows": lambda d: d.merge("s", "t", "stage", ["k", "v"], ["k"], None, frozenset(), "T",
                                              compare_rows=False).sql,
    "soft_delete": lambda d: d.soft_delete_absent("s", "t", "keys", ["k"], frozenset(), "T").sql,
    "count_live": lambda d: d.count_live("airflow-qwe123", "dag").sql,
}

GOLDEN = [
    ('duckdb', 'table', '"airflow-qwe123"."task_instance"'),
    ('postgresql', 'table', '"airflow-qwe123"."task_instance"'),
    ('snowflake', 'table', '"airflow-qwe123"."TASK_INSTANCE"'),
    ('redshift', 'table', '"airflow-qwe123"."task_instance"'),
    ('duckdb', 'create_table', 'CREATE TABLE IF NOT EXISTS "airflow-qwe123"."dag_run" ("run_id" VARCHAR, "conf" JSON, "updated_at" TIMESTAMPTZ, "blob" BLOB)'),
    ('postgresql', 'create_table', 'CREATE TABLE IF NOT EXISTS "airflow-qwe123"."dag_run" ("run_id" TEXT, "conf" JSONB, "updated_at" TIMESTAMP WITH TIME ZONE, "blob" BYTEA)'),
    ('snowflake', 'create_table', 'CREATE TABLE IF NOT EXISTS "airflow-qwe123"."DAG_RUN" ("RUN_ID" VARCHAR, "CONF" VARIANT, "UPDATED_AT" TIMESTAMP_TZ(6), "BLOB" BINARY)'),
    ('redshift', 'create_table', 'CREATE TABLE IF NOT EXISTS "airflow-qwe123"."dag_run" ("run_id" VARCHAR(65535), "conf" SUPER, "updated_at" TIMESTAMPTZ, "blob" VARBYTE(1024000))'),
    ('duckdb', 'add_column', 'ALTER TABLE "airflow-qwe123"."dag_run" ADD COLUMN "note" VARCHAR'),
    ('postgresql', 'add_column', 'ALTER TABLE "airflow-qwe123"."dag_run" ADD COLUMN "note" TEXT'),
    ('snowflake', 'add_column', 'ALTER TABLE "airflow-qwe123"."DAG_RUN" ADD COLUMN "NOTE" VARCHAR'),
    ('redshift', 'add_column', 'ALTER TABLE "airflow-qwe123"."dag_run" ADD COLUMN "note" VARCHAR(65535)'),
    ('duckdb', 'create_staging', 'CREATE TEMPORARY TABLE "_cdc_stage_rows_dag_run" ("run_id" VARCHAR)'),
    ('postgresql', 'create_staging', 'CREATE TEMPORARY TABLE "_cdc_stage_rows_dag_run" ("run_id" TEXT)'),
    ('snowflake', 'create_staging', 'CREATE TEMPORARY TABLE "_CDC_STAGE_ROWS_DAG_RUN" ("RUN_ID" VARCHAR)'),
    ('redshift', 'create_staging', 'CREATE TEMPORARY TABLE "_cdc_stage_rows_dag_run" ("run_id" VARCHAR(65535))'),
    ('duckdb', 'merge', 'MERGE INTO "airflow-qwe123"."dag_run" AS t USING (SELECT "dag_id", "run_id", "state" FROM (SELECT "dag_id", "run_id", "state", ROW_NUMBER() OVER (PARTITION BY "dag_id", "run_id" ORDER BY "updated_at" DESC NULLS LAST) AS _cdc_rank FROM "_cdc_stage_rows_dag_run") AS ranked WHERE _cdc_rank = 1) AS s ON t."dag_id" = s."dag_id" AND t."run_id" = s."run_id" WHEN MATCHED AND (t."state" IS DISTINCT FROM s."state" OR t."_cdc_deleted_at" IS NOT NULL) THEN UPDATE SET "state" = s."state", "_cdc_synced_at" = ?, "_cdc_deleted_at" = NULL WHEN NOT MATCHED THEN INSERT ("dag_id", "run_id", "state", "_cdc_synced_at") VALUES (s."dag_id", s."run_id", s."state", ?)'),
    ('postgresql', 'merge', 'MERGE INTO "airflow-qwe123"."dag_run" AS t USING (SELECT "dag_id", "run_id", "state" FROM (SELECT "dag_id", "run_id", "state", ROW_NUMBER() OVER (PARTITION BY "dag_id", "run_id" ORDER BY "updated_at" DESC NULLS LAST) AS _cdc_rank FROM "_cdc_stage_rows_dag_run") AS ranked WHERE _cdc_rank = 1) AS s ON t."dag_id" = s."dag_id" AND t."run_id" = s."run_id" WHEN MATCHED AND (t."state" IS DISTINCT FROM s."state" OR t."_cdc_deleted_at" IS NOT NULL) THEN UPDATE SET "state" = s."state", "_cdc_synced_at" = %s, "_cdc_deleted_at" = NULL WHEN NOT MATCHED THEN INSERT ("dag_id", "run_id", "state", "_cdc_synced_at") VALUES (s."dag_id", s."run_id", s."state", %s)'),
    ('snowflake', 'merge', 'MERGE INTO "airflow-qwe123"."DAG_RUN" AS t USING (SELECT "DAG_ID", "RUN_ID", "STATE" FROM (SELECT "DAG_ID", "RUN_ID", "STATE", ROW_NUMBER() OVER (PARTITION BY "DAG_ID", "RUN_ID" ORDER BY "UPDATED_AT" DESC NULLS LAST) AS _cdc_rank FROM "_CDC_STAGE_ROWS_DAG_RUN") AS ranked WHERE _cdc_rank = 1) AS s ON t."DAG_ID" = s."DAG_ID" AND t."RUN_ID" = s."RUN_ID" WHEN MATCHED AND (t."STATE" IS DISTINCT FROM s."STATE" OR t."_CDC_DELETED_AT" IS NOT NULL) THEN UPDATE SET "STATE" = s."STATE", "_CDC_SYNCED_AT" = %s, "_CDC_DELETED_AT" = NULL WHEN NOT MATCHED THEN INSERT ("DAG_ID", "RUN_ID", "STATE", "_CDC_SYNCED_AT") VALUES (s."DAG_ID", s."RUN_ID", s."STATE", %s)'),
    ('redshift', 'merge', 'DELETE FROM "airflow-qwe123"."dag_run" USING "_cdc_stage_rows_dag_run" WHERE "airflow-qwe123"."dag_run"."dag_id" = "_cdc_stage_rows_dag_run"."dag_id" AND "airflow-qwe123"."dag_run"."run_id" = "_cdc_stage_rows_dag_run"."run_id" AND (NOT ("airflow-qwe123"."dag_run"."state" = "_cdc_stage_rows_dag_run"."state" OR ("airflow-qwe123"."dag_run"."state" IS NULL AND "_cdc_stage_rows_dag_run"."state" IS NULL)) OR "airflow-qwe123"."dag_run"."_cdc_deleted_at" IS NOT NULL);\nINSERT INTO "airflow-qwe123"."dag_run" ("dag_id", "run_id", "state", "_cdc_synced_at") SELECT latest."dag_id", latest."run_id", latest."state", %s FROM (SELECT "dag_id", "run_id", "state" FROM (SELECT "dag_id", "run_id", "state", ROW_NUMBER() OVER (PARTITION BY "dag_id", "run_id" ORDER BY "updated_at" DESC NULLS LAST) AS _cdc_rank FROM "_cdc_stage_rows_dag_run") AS ranked WHERE _cdc_rank = 1) AS latest WHERE NOT EXISTS (SELECT 1 FROM "airflow-qwe123"."dag_run" WHERE "airflow-qwe123"."dag_run"."dag_id" = latest."dag_id" AND "airflow-qwe123"."dag_run"."run_id" = latest."run_id")'),
    ('duckdb', 'merge_nullable_key', 'MERGE INTO "s"."t" AS t USING (SELECT "k", "v" FROM (SELECT "k", "v", ROW_NUMBER() OVER (PARTITION BY "k") AS _cdc_rank FROM "stage") AS ranked WHERE _cdc_rank = 1) AS s ON t."k" IS NOT DISTINCT FROM s."k" WHEN MATCHED AND (t."v" IS DISTINCT FROM s."v" OR t."_cdc_deleted_at" IS NOT NULL) THEN UPDATE SET "v" = s."v", "_cdc_synced_at" = ?, "_cdc_deleted_at" = NULL WHEN NOT MATCHED THEN INSERT ("k", "v", "_cdc_synced_at") VALUES (s."k", s."v", ?)'),
    ('postgresql', 'merge_nullable_key', 'MERGE INTO "s"."t" AS t USING (SELECT "k", "v" FROM (SELECT "k", "v", ROW_NUMBER() OVER (PARTITION BY "k") AS _cdc_rank FROM "stage") AS ranked WHERE _cdc_rank = 1) AS s ON t."k" IS NOT DISTINCT FROM s."k" WHEN MATCHED AND (t."v" IS DISTINCT FROM s."v" OR t."_cdc_deleted_at" IS NOT NULL) THEN UPDATE SET "v" = s."v", "_cdc_synced_at" = %s, "_cdc_deleted_at" = NULL WHEN NOT MATCHED THEN INSERT ("k", "v", "_cdc_synced_at") VALUES (s."k", s."v", %s)'),
    ('snowflake', 'merge_nullable_key', 'MERGE INTO "s"."T" AS t USING (SELECT "K", "V" FROM (SELECT "K", "V", ROW_NUMBER() OVER (PARTITION BY "K") AS _cdc_rank FROM "STAGE") AS ranked WHERE _cdc_rank = 1) AS s ON t."K" IS NOT DISTINCT FROM s."K" WHEN MATCHED AND (t."V" IS DISTINCT FROM s."V" OR t."_CDC_DELETED_AT" IS NOT NULL) THEN UPDATE SET "V" = s."V", "_CDC_SYNCED_AT" = %s, "_CDC_DELETED_AT" = NULL WHEN NOT MATCHED THEN INSERT ("K", "V", "_CDC_SYNCED_AT") VALUES (s."K", s."V", %s)'),
    ('redshift', 'merge_nullable_key', 'DELETE FROM "s"."t" USING "stage" WHERE ("s"."t"."k" = "stage"."k" OR ("s"."t"."k" IS NULL AND "stage"."k" IS NULL)) AND (NOT ("s"."t"."v" = "stage"."v" OR ("s"."t"."v" IS NULL AND "stage"."v" IS NULL)) OR "s"."t"."_cdc_deleted_at" IS NOT NULL);\nINSERT INTO "s"."t" ("k", "v", "_cdc_synced_at") SELECT latest."k", latest."v", %s FROM (SELECT "k", "v" FROM (SELECT "k", "v", ROW_NUMBER() OVER (PARTITION BY "k") AS _cdc_rank FROM "stage") AS ranked WHERE _cdc_rank = 1) AS latest WHERE NOT EXISTS (SELECT 1 FROM "s"."t" WHERE ("s"."t"."k" = latest."k" OR ("s"."t"."k" IS NULL AND latest."k" IS NULL)))'),
    ('duckdb', 'merge_rewritten_rows', 'MERGE INTO "s"."t" AS t USING (SELECT "k", "v" FROM (SELECT "k", "v", ROW_NUMBER() OVER (PARTITION BY "k") AS _cdc_rank FROM "stage") AS ranked WHERE _cdc_rank = 1) AS s ON t."k" = s."k" WHEN MATCHED THEN UPDATE SET "v" = s."v", "_cdc_synced_at" = ?, "_cdc_deleted_at" = NULL WHEN NOT MATCHED THEN INSERT ("k", "v", "_cdc_synced_at") VALUES (s."k", s."v", ?)'),
    ('postgresql', 'merge_rewritten_rows', 'MERGE INTO "s"."t" AS t USING (SELECT "k", "v" FROM (SELECT "k", "v", ROW_NUMBER() OVER (PARTITION BY "k") AS _cdc_rank FROM "stage") AS ranked WHERE _cdc_rank = 1) AS s ON t."k" = s."k" WHEN MATCHED THEN UPDATE SET "v" = s."v", "_cdc_synced_at" = %s, "_cdc_deleted_at" = NULL WHEN NOT MATCHED THEN INSERT ("k", "v", "_cdc_synced_at") VALUES (s."k", s."v", %s)'),
    ('snowflake', 'merge_rewritten_rows', 'MERGE INTO "s"."T" AS t USING (SELECT "K", "V" FROM (SELECT "K", "V", ROW_NUMBER() OVER (PARTITION BY "K") AS _cdc_rank FROM "STAGE") AS ranked WHERE _cdc_rank = 1) AS s ON t."K" = s."K" WHEN MATCHED THEN UPDATE SET "V" = s."V", "_CDC_SYNCED_AT" = %s, "_CDC_DELETED_AT" = NULL WHEN NOT MATCHED THEN INSERT ("K", "V", "_CDC_SYNCED_AT") VALUES (s."K", s."V", %s)'),
    ('redshift', 'merge_rewritten_rows', 'DELETE FROM "s"."t" USING "stage" WHERE "s"."t"."k" = "stage"."k";\nINSERT INTO "s"."t" ("k", "v", "_cdc_synced_at") SELECT latest."k", latest."v", %s FROM (SELECT "k", "v" FROM (SELECT "k", "v", ROW_NUMBER() OVER (PARTITION BY "k") AS _cdc_rank FROM "stage") AS ranked WHERE _cdc_rank = 1) AS latest WHERE NOT EXISTS (SELECT 1 FROM "s"."t" WHERE "s"."t"."k" = latest."k")'),
    ('duckdb', 'soft_delete', 'UPDATE "s"."t" SET "_cdc_deleted_at" = ? WHERE "_cdc_deleted_at" IS NULL AND NOT EXISTS (SELECT 1 FROM "keys" AS k WHERE k."k" = "s"."t"."k")'),
    ('postgresql', 'soft_delete', 'UPDATE "s"."t" SET "_cdc_deleted_at" = %s WHERE "_cdc_deleted_at" IS NULL AND NOT EXISTS (SELECT 1 FROM "keys" AS k WHERE k."k" = "s"."t"."k")'),
    ('snowflake', 'soft_delete', 'UPDATE "s"."T" SET "_CDC_DELETED_AT" = %s WHERE "_CDC_DELETED_AT" IS NULL AND NOT EXISTS (SELECT 1 FROM "KEYS" AS k WHERE k."K" = "s"."T"."K")'),
    ('redshift', 'soft_delete', 'UPDATE "s"."t" SET "_cdc_deleted_at" = %s WHERE "_cdc_deleted_at" IS NULL AND NOT EXISTS (SELECT 1 FROM "keys" AS k WHERE k."k" = "s"."t"."k")'),
    ('duckdb', 'count_live', 'SELECT count(*) FROM "airflow-qwe123"."dag" WHERE "_cdc_deleted_at" IS NULL'),
    ('postgresql', 'count_live', 'SELECT count(*) FROM "airflow-qwe123"."dag" WHERE "_cdc_deleted_at" IS NULL'),
    ('snowflake', 'count_live', 'SELECT count(*) FROM "airflow-qwe123"."DAG" WHERE "_CDC_DELETED_AT" IS NULL'),
    ('redshift', 'count_live', 'SELECT count(*) FROM "airflow-qwe123"."dag" WHERE "_cdc_deleted_at" IS NULL'),]


@pytest.mark.parametrize(("dialect", "case", "expected"), GOLDEN, ids=[f"{d}-{c}" for d, c, _ in GOLDEN])
def test_golden(dialect: str, case: str, expected: str) -> None:
    assert BUILD[case](DIALECTS[dialect]) == expected


SNOWFLAKE = SnowflakeDialect()
REDSHIFT = RedshiftDialect()


@pytest.mark.parametrize(("built", "expected"), [
    (SNOWFLAKE.table_stage("mirror", "airflow-qwe123", "_cdc_stage_rows_dag"),
     '@"MIRROR"."airflow-qwe123".%_CDC_STAGE_ROWS_DAG'),
    (SNOWFLAKE.put(Path("/tmp/a b/x'y.parquet"), "@S").sql,
     "PUT 'file:///tmp/a b/x\\'y.parquet' @S AUTO_COMPRESS = FALSE OVERWRITE = TRUE"),
    (SNOWFLAKE.copy_into("_cdc_stage_rows_t", "@S", COLUMNS).sql,
     'COPY INTO "_CDC_STAGE_ROWS_T" ("RUN_ID", "CONF", "UPDATED_AT", "BLOB") FROM (SELECT $1:"run_id"::VARCHAR, '
     'PARSE_JSON($1:"conf"), $1:"updated_at"::TIMESTAMP_TZ(6), $1:"blob"::BINARY FROM @S) '
     "FILE_FORMAT = (TYPE = PARQUET) PURGE = TRUE"),
    (SNOWFLAKE.empty_staging("_cdc_stage_keys_t").sql, 'DELETE FROM "_CDC_STAGE_KEYS_T"'),
    (SNOWFLAKE.use_schema("airflow-qwe123").sql, 'USE SCHEMA "airflow-qwe123"'),
    (SNOWFLAKE.companion_staging("_cdc_stage_rows_dag"), "_cdc_stage_keys_dag"),
    (REDSHIFT.insert_values("_cdc_stage_rows_t", COLUMNS[:2], 2),
     'INSERT INTO "_cdc_stage_rows_t" ("run_id", "conf") VALUES (%s, JSON_PARSE(%s)), (%s, JSON_PARSE(%s))'),
    (REDSHIFT.copy_from_s3("_cdc_stage_rows_t", COLUMNS[:1], "s3://b/p/", "arn:aws:iam::1:role/r").sql,
     'COPY "_cdc_stage_rows_t" ("run_id") FROM \'s3://b/p/\' IAM_ROLE \'arn:aws:iam::1:role/r\' '
     "FORMAT AS PARQUET SERIALIZETOJSON"),
    (REDSHIFT.lock_table("airflow-qwe123").sql, 'LOCK "airflow-qwe123"."_cdc_locks"'),
    # The first statement of a writing transaction: the state tables, in one order (the lease table first).
    (REDSHIFT.lock_shared_state("Airflow-qwe123").sql,
     'LOCK "airflow-qwe123"."_cdc_meta", "airflow-qwe123"."_cdc_runs", "airflow-qwe123"."_cdc_watermarks"'),
    (REDSHIFT.lock_shared_state("airflow-qwe123", with_leases=True).sql,
     'LOCK "airflow-qwe123"."_cdc_locks", "airflow-qwe123"."_cdc_meta", "airflow-qwe123"."_cdc_runs", '
     '"airflow-qwe123"."_cdc_watermarks"'),
    (PostgresDialect().try_lock("airflow-qwe123").sql, "SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))"),
    (PostgresDialect().try_lock("airflow-qwe123").params, ("cdc_sync:airflow-qwe123", "_cdc_schema")),
    # The whole-cycle lock of a cdc_sync before per-table locks, held in shared mode by this one.
    (PostgresDialect().try_share_schema("airflow-qwe123").sql, "SELECT pg_try_advisory_lock_shared(hashtext(%s))"),
    (PostgresDialect().try_share_schema("airflow-qwe123").params, ("cdc_sync:airflow-qwe123",)),
    (PostgresDialect().try_lock("airflow-qwe123", "dag").sql, "SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))"),
    (PostgresDialect().try_lock("airflow-qwe123", "dag").params, ("cdc_sync:airflow-qwe123", "dag")),
    (PostgresDialect().unlock("airflow-qwe123", "dag").sql, "SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))"),
    (lease_name("airflow-qwe123"), "cdc_sync:airflow-qwe123"),
    (lease_name("airflow-qwe123", "dag_run"), "cdc_sync:airflow-qwe123/dag_run"),
    (REDSHIFT.table("Airflow-QWE123", "Dag"), '"airflow-qwe123"."dag"'),
    (REDSHIFT.schema_exists("Airflow").params, ("airflow",)),
])
def test_engine_specific(built: object, expected: object) -> None:
    assert built == expected


def test_key_digest_renders_text_and_integer_keys_and_refuses_others() -> None:
    key = [ColumnSpec("run_id", L.TEXT), ColumnSpec("map_index", L.INTEGER)]
    assert PostgresDialect().key_digest("s", "t", key).sql == (
        "SELECT count(*), COALESCE(SUM(('x' || SUBSTRING(h, 1, 8))::bit(32)::bigint), 0), "
        "COALESCE(SUM(('x' || SUBSTRING(h, 9, 8))::bit(32)::bigint), 0) FROM (SELECT MD5("
        'COALESCE(CAST("run_id" AS TEXT), %s) || %s || COALESCE(CAST("map_index" AS TEXT), %s)) AS h '
        'FROM "s"."t" WHERE "_cdc_deleted_at" IS NULL) AS rendered_keys'
    )
    assert PostgresDialect().key_digest("s", "t", key).params == ("\x1e", "\x1f", "\x1e")
    assert "STRTOL(SUBSTRING(h, 1, 8), 16)" in RedshiftDialect().key_digest("s", "t", key).sql
    assert "CAST(\"run_id\" AS VARCHAR(65535))" in RedshiftDialect().key_digest("s", "t", key).sql
    assert "TO_NUMBER(SUBSTRING(h, 9, 8), 'XXXXXXXX')" in SnowflakeDialect().key_digest("s", "t", key).sql
    assert "CAST('0x' || SUBSTRING(h, 1, 8) AS UBIGINT)" in DuckDBDialect().key_digest("s", "t", key).sql
    for dialect in DIALECTS.values():
        assert dialect.key_digest("s", "t", [ColumnSpec("at", L.TIMESTAMP_TZ)]) is None
