"""Table selection and per-table strategy, from the catalog and introspection (no database needed)."""

from __future__ import annotations

import pytest

from cdc_sync.config import build_config
from cdc_sync.errors import ConfigError, UnknownTableError
from cdc_sync.plan import plan_table, select_tables
from cdc_sync.types import Column, LogicalType, TableSchema

AIRFLOW3 = ["alembic_version", "dag", "dag_run", "dag_tag", "import_error", "job", "log", "task_instance", "xcom"]


def config(**options):
    return build_config(source="postgresql://h/airflow", destination="duckdb:///x.duckdb", **options)


def test_defaults_skip_tables_this_airflow_lacks_with_a_warning() -> None:
    tables, warnings = select_tables(config(), AIRFLOW3)
    assert tables == ["dag", "dag_run", "dag_tag", "import_error", "job", "task_instance"]
    assert len(warnings) == 4 and all("does not exist" in w for w in warnings)


def test_tables_replace_defaults_and_additional_tables_add_to_them() -> None:
    assert select_tables(config(tables=["log", "dag"]), AIRFLOW3)[0] == ["log", "dag"]
    assert select_tables(config(additional_tables=["log"]), AIRFLOW3)[0][-1] == "log"


def test_empty_table_list_means_every_table_but_airflows_bookkeeping() -> None:
    tables, _ = select_tables(config(tables=[]), AIRFLOW3)
    assert "alembic_version" not in tables and set(tables) == set(AIRFLOW3) - {"alembic_version"}


@pytest.mark.parametrize("options", [{"tables": ["nope"]}, {"additional_tables": ["nope"]}])
def test_a_named_table_that_does_not_exist_is_an_error(options) -> None:
    with pytest.raises(UnknownTableError, match="nope"):
        select_tables(config(**options), AIRFLOW3)


@pytest.mark.parametrize("bad", [{"deletes": "sometimes"}, {"tables": "dag"}, {"tables": ["dag; drop"]},
                                 {"include_columns": ["password"]}, {"lookback_seconds": -1}])
def test_bad_options_fail_early(bad) -> None:
    with pytest.raises(ConfigError):
        config(**bad)


def ti_schema(pk: tuple[str, ...]) -> TableSchema:
    columns = tuple(Column(n, t, nullable=n not in {"id", "dag_id", "task_id", "run_id", "map_index"})
                    for n, t in [("id", LogicalType.TEXT), ("dag_id", LogicalType.TEXT), ("task_id", LogicalType.TEXT),
                                 ("run_id", LogicalType.TEXT), ("map_index", LogicalType.INTEGER),
                                 ("updated_at", LogicalType.TIMESTAMP_TZ)])
    return TableSchema("task_instance", columns, pk)


def test_task_instance_merges_on_its_natural_key_not_the_retry_uuid() -> None:
    plan = plan_table(ti_schema(("id",)), config())
    assert plan.merge_key == ("dag_id", "task_id", "run_id", "map_index")
    assert (plan.strategy, plan.cursor) == ("incremental", "updated_at")


def test_secret_columns_are_dropped_unless_included_and_hashed_columns_become_text() -> None:
    columns = (Column("id", LogicalType.INTEGER, False), Column("password", LogicalType.TEXT),
               Column("extra", LogicalType.TEXT), Column("port", LogicalType.INTEGER))
    schema = TableSchema("connection", columns, ("id",))
    assert plan_table(schema, config()).table.column_names == ("id", "port")
    plan = plan_table(schema, config(include_columns=["connection.extra"], hash_columns=["connection.port"]))
    assert plan.table.column_names == ("id", "extra", "port")
    assert plan.table.column("port").logical_type is LogicalType.TEXT


def test_table_without_cursor_or_key_is_fully_replaced() -> None:
    schema = TableSchema("session", (Column("data", LogicalType.TEXT),))
    plan = plan_table(schema, config())
    assert (plan.strategy, plan.merge_key, plan.table.column_names) == ("full", (), ())
