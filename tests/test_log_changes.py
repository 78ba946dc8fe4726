"""Collapsing a table's log changes (cdc_sync.log_changes): the last version per merge key, deletes by replica
identity, unchanged TOASTed values carried from an earlier version or left out, TRUNCATE; no database."""

from __future__ import annotations

from datetime import UTC, datetime

from cdc_sync import log_changes, log_spool
from cdc_sync.config import build_config
from cdc_sync.log_changes import LoggedChange, collapse, collapse_in_segments
from cdc_sync.log_spool import ChangeSpool
from cdc_sync.plan import plan_table
from cdc_sync.sources.pgoutput import UNCHANGED_TOAST, Begin, Commit, Delete, Insert, Relation, RelationColumn, Update
from cdc_sync.sources.postgres_log import LogChange
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


def transaction(end_lsn: int, *messages) -> list:
    commit_time = datetime(2026, 1, 2, 3, 4, end_lsn % 60, tzinfo=UTC)
    return [Begin(end_lsn - 10, commit_time, end_lsn), *messages, Commit(0, end_lsn - 10, end_lsn, commit_time)]


def spooled(plan, *messages, after: int = 0):
    """The messages (``transaction``s) through the spool, read back as the table's versions after ``after``."""
    stream = messages if isinstance(messages[0], list) else [transaction(100, *messages)]
    spool = ChangeSpool({plan.name: plan.column_names})
    try:
        spool.read(LogChange(10 + index, 1, message) for index, message in enumerate(m for t in stream for m in t))
        return spool.identity(plan.name), list(spool.versions(plan.name, after, plan.column_names))
    finally:
        spool.close()


def test_the_spool_gives_every_version_in_order_with_its_commit_across_batches_and_a_schema_change(
        monkeypatch) -> None:
    monkeypatch.setattr(log_spool, "SPOOL_BATCH_ROWS", 2)
    plan = task_instance_plan()
    narrower = Relation(7, "public", "task_instance", "d", RELATION.columns[:-1])  # next_kwargs dropped
    stream = [
        transaction(100, RELATION, Insert(7, tuple(row("a", "queued", '{"big": 1}').values())),
                    Update(7, tuple(row("a", "running", UNCHANGED_TOAST).values())),
                    Insert(7, tuple(row("b", "queued", None, task="t2").values()))),
        transaction(200, narrower, Update(7, tuple(row("a", "success").values())[:-1])),
    ]
    _, versions = spooled(plan, *stream)
    assert [(c.end_lsn, c.values["state"], c.values["next_kwargs"]) for c in versions] == [
        (100, "queued", '{"big": 1}'), (100, "running", UNCHANGED_TOAST), (100, "queued", None),
        (200, "success", UNCHANGED_TOAST),  # a column the table no longer sends is left as the mirror has it
    ]
    assert [c.lsn for c in versions] == sorted(c.lsn for c in versions) and versions[0].lsn == 12
    assert versions[0].commit_time == stream[0][0].commit_time and versions[3].commit_time == stream[1][0].commit_time
    assert [c.values["state"] for c in spooled(plan, *stream, after=100)[1]] == ["success"]

    monkeypatch.setattr(log_changes, "SEGMENT_CHANGES", 3)
    segments = list(collapse_in_segments(plan, ID, versions))
    assert [segment.changes_read for segment in segments] == [3, 1]
    assert [(r["task_id"], r["state"], r.get("next_kwargs")) for r in rows_of(segments[0])] == \
        [("t1", "running", '{"big": 1}'), ("t2", "queued", None)]
    assert [(r["task_id"], r["state"], r.get("next_kwargs")) for r in rows_of(segments[1])] == \
        [("t1", "success", None)]
    assert segments[1].upserts[0].columns == NAMES[:-1]  # the mirror keeps the value the first segment wrote


RELATION = Relation(7, "public", "task_instance", "d",
                    tuple(RelationColumn(name, 25, -1, name == "id") for name in NAMES))


def test_a_new_identity_deletes_the_old_one_and_a_delete_drops_the_pending_upsert() -> None:
    plan = task_instance_plan()
    new_id = tuple(row("b", "up_for_retry").values())
    identity, versions = spooled(
        plan, RELATION, Insert(7, tuple(row("c", "queued", task="t3").values())),
        Update(7, new_id, old=("a", None, None, None, None, None, None), old_is_key=True),
        Delete(7, ("c", None, None, None, None, None, None), key_only=True))
    assert identity == ID
    assert [(c.kind, c.values.get("id"), c.end_lsn) for c in versions] == \
        [("upsert", "c", 100), ("delete", "a", 100), ("upsert", "b", 100), ("delete", "c", 100)]
    changes = collapse(plan, ID, versions)
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
