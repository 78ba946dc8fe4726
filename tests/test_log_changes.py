"""Collapsing a table's log changes (cdc_sync.log_changes): the last version per merge key, deletes by replica
identity, unchanged TOASTed values carried from an earlier version or left out, TRUNCATE; no database."""

from __future__ import annotations

from cdc_sync.config import build_config
from cdc_sync.log_changes import LoggedChange, collapse, logged_changes
from cdc_sync.plan import plan_table
from cdc_sync.sources.pgoutput import UNCHANGED_TOAST, Delete, Relation, RelationColumn, Update
from cdc_sync.types import Column, LogicalType, TableSchema

ID = ("id",)
COLUMNS = (
    Column("id", LogicalType.TEXT, nullable=False, source_type="uuid"),
    Column("dag_id", LogicalType.TEXT, nullable=False, source_type="varchar"),
    Column("task_id", LogicalType.TEXT, nullable=False, source_type="varchar"),
    Column("run_id", LogicalType.TEXT, nullable=False, source_type="varchar"),
    Column("map_index", LogicalType.INTEGER, nullable=False, source_type="int4"),
    Column("state", LogicalType.TEXT, nullable=True, source_type="varchar"),
    Column("next_kwargs", LogicalType.JSON, nullable=True, source_type="jsonb"),
)
NAMES = tuple(column.name for column in COLUMNS)


def task_instance_plan():
    schema = TableSchema("task_instance", COLUMNS, primary_key=ID)
    plan = plan_table(schema, build_config(source="postgresql://h/airflow", destination="duckdb:///x.duckdb"))
    assert plan.merge_key == ("dag_id", "task_id", "run_id", "map_index")  # a natural key, not the UUID
    return plan


def row(uuid: str, state: str | None, kwargs=None, task: str = "t1") -> dict:
    return dict(zip(NAMES, (uuid, "d", task, "r", "-1", state, kwargs), strict=True))


def rows_of(changes) -> list[dict]:
    return sorted((r for group in changes.upserts for batch in group.batches for r in batch.to_pylist()),
                  key=lambda r: r["task_id"])


def test_the_last_version_wins_and_an_unchanged_toast_value_comes_from_an_earlier_one() -> None:
    plan = task_instance_plan()
    changes = collapse(plan, ID, [
        LoggedChange(1, "upsert", row("a", "queued", '{"big": 1}')),
        LoggedChange(2, "upsert", row("a", "running", UNCHANGED_TOAST)),
        LoggedChange(3, "upsert", row("b", "success", UNCHANGED_TOAST, task="t2")),
    ])
    assert changes.changes_read == 3 and not changes.truncated and not changes.deleted_keys
    # t1's earlier version supplied the value; t2's never arrived, so its group leaves the column out.
    assert {group.columns for group in changes.upserts} == {NAMES, NAMES[:-1]}
    assert [(r["task_id"], r["state"], r.get("next_kwargs")) for r in rows_of(changes)] == \
        [("t1", "running", '{"big": 1}'), ("t2", "success", None)]


def test_a_new_identity_deletes_the_old_one_and_a_delete_drops_the_pending_upsert() -> None:
    plan = task_instance_plan()
    relation = Relation(7, "public", "task_instance", "d",
                        tuple(RelationColumn(name, 25, -1, name == "id") for name in NAMES))
    new_id = tuple(row("b", "up_for_retry").values())
    retried = list(logged_changes(Update(7, new_id, old=("a", None, None, None, None, None, None), old_is_key=True),
                                  relation, 5))
    assert [(c.kind, c.values.get("id")) for c in retried] == [("delete", "a"), ("upsert", "b")]
    gone = list(logged_changes(Delete(7, ("c", None, None, None, None, None, None), key_only=True), relation, 6))
    changes = collapse(plan, ID, [LoggedChange(4, "upsert", row("c", "queued", task="t3")), *retried, *gone])
    assert sorted(key for batch in changes.deleted_keys for key in batch.column("id").to_pylist()) == ["a", "c"]
    assert [(r["id"], r["state"]) for r in rows_of(changes)] == [("b", "up_for_retry")]


def test_a_truncate_forgets_what_came_before_it() -> None:
    plan = task_instance_plan()
    changes = collapse(plan, ID, [
        LoggedChange(1, "upsert", row("a", "queued")), LoggedChange(2, "delete", {"id": "z"}),
        LoggedChange(3, "truncate"), LoggedChange(4, "upsert", row("b", "queued", task="t2")),
    ])
    assert changes.truncated and not changes.deleted_keys
    assert [r["id"] for r in rows_of(changes)] == ["b"]
