"""The log spool (cdc_sync.log_spool) and collapsing its changes (cdc_sync.log_changes): every version in the log's
order with its commit, the last version per merge key, deletes by replica identity, unchanged TOASTed values
carried from an earlier version or left out, TRUNCATE, segments; pgoutput messages built here, no database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cdc_sync import log_changes, log_spool
from cdc_sync.config import build_config
from cdc_sync.log_changes import collapse_in_segments
from cdc_sync.log_spool import ChangeSpool
from cdc_sync.plan import plan_table
from cdc_sync.sources.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    Commit,
    Delete,
    Insert,
    Relation,
    RelationColumn,
    Truncate,
    Update,
)
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
RELATION = Relation(7, "public", "task_instance", "d",
                    tuple(RelationColumn(name, 25, -1, name == "id") for name in NAMES))
NARROWER = Relation(7, "public", "task_instance", "d", RELATION.columns[:-1])  # next_kwargs dropped


def task_instance_plan():
    schema = TableSchema("task_instance", COLUMNS, primary_key=ID)
    plan = plan_table(schema, build_config(source="postgresql://h/airflow", destination="duckdb:///x.duckdb"))
    assert plan.merge_key == ("dag_id", "task_id", "run_id", "map_index")  # a natural key, not the UUID
    return plan


def row(uuid: str, state: str | None, kwargs=None, task: str = "t1") -> tuple:
    return (uuid, "d", task, "r", "-1", state, kwargs)


def key(uuid: str) -> tuple:
    return (uuid, None, None, None, None, None, None)


def transaction(end_lsn: int, *messages) -> list:
    commit_time = datetime(2026, 1, 2, 3, 4, end_lsn % 60, tzinfo=UTC)
    return [Begin(end_lsn - 10, commit_time, end_lsn), *messages, Commit(0, end_lsn - 10, end_lsn, commit_time)]


@pytest.fixture
def spool():
    plan = task_instance_plan()
    spool = ChangeSpool({plan.name: plan.column_names})
    yield spool
    spool.close()


def read(spool: ChangeSpool, *transactions) -> ChangeSpool:
    messages = (message for messages in transactions for message in messages)
    return spool.read(LogChange(10 + index, 1, message) for index, message in enumerate(messages))


def collapsed(spool: ChangeSpool, after: int = 0) -> list:
    plan = task_instance_plan()
    return list(collapse_in_segments(plan, spool.identity(plan.name), spool.batches(plan.name, after)))


def rows_of(changes) -> list[dict]:
    return sorted((r for group in changes.upserts for batch in group.batches for r in batch.to_pylist()),
                  key=lambda r: r["task_id"])


def test_the_last_version_wins_and_an_unchanged_toast_value_comes_from_an_earlier_one(spool) -> None:
    read(spool, transaction(100, RELATION, Insert(7, row("a", "queued", '{"big": 1}')),
                            Update(7, row("a", "running", UNCHANGED_TOAST)),
                            Update(7, row("b", "success", UNCHANGED_TOAST, task="t2"))))
    [changes] = collapsed(spool)
    assert changes.changes_read == 3 and not changes.truncated and not changes.deleted_keys
    # t1's earlier version supplied the value; t2's never arrived, so its group leaves the column out.
    assert {group.columns for group in changes.upserts} == {NAMES, NAMES[:-1]}
    assert [(r["task_id"], r["state"], r.get("next_kwargs")) for r in rows_of(changes)] == \
        [("t1", "running", '{"big": 1}'), ("t2", "success", None)]


def test_a_new_identity_deletes_the_old_one_and_a_delete_drops_the_pending_upsert(spool) -> None:
    read(spool, transaction(100, RELATION, Insert(7, row("c", "queued", task="t3")),
                            Update(7, row("b", "up_for_retry"), old=key("a"), old_is_key=True),
                            Delete(7, key("c"), key_only=True)))
    assert spool.identity("task_instance") == ID
    versions = list(spool.versions("task_instance", 0))
    assert [(c.kind, c.op, c.values.get("id"), c.end_lsn) for c in versions] == [
        ("upsert", "insert", "c", 100), ("delete", "", "a", 100), ("upsert", "update", "b", 100),
        ("delete", "delete", "c", 100)]
    [changes] = collapsed(spool)
    assert sorted(key for batch in changes.deleted_keys for key in batch.column("id").to_pylist()) == ["a", "c"]
    assert [(r["id"], r["state"]) for r in rows_of(changes)] == [("b", "up_for_retry")]


def test_a_truncate_forgets_what_came_before_it(spool) -> None:
    read(spool, transaction(100, RELATION, Insert(7, row("a", "queued")), Delete(7, key("z"), key_only=True),
                            Truncate((7,), cascade=False, restart_identity=False),
                            Insert(7, row("b", "queued", task="t2"))))
    [changes] = collapsed(spool)
    assert changes.truncated and not changes.deleted_keys and changes.changes_read == 4
    assert [r["id"] for r in rows_of(changes)] == ["b"]


def test_the_spool_gives_every_version_in_order_with_its_commit_across_batches_and_a_schema_change(
        spool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_spool, "SPOOL_BATCH_ROWS", 2)
    stream = [
        transaction(100, RELATION, Insert(7, row("a", "queued", '{"big": 1}')),
                    Update(7, row("a", "running", UNCHANGED_TOAST)), Insert(7, row("b", "queued", None, task="t2"))),
        transaction(200, NARROWER, Update(7, row("a", "success")[:-1])),
    ]
    read(spool, *stream)
    versions = list(spool.versions("task_instance", 0))
    assert [(c.end_lsn, c.values["state"], c.values["next_kwargs"]) for c in versions] == [
        (100, "queued", '{"big": 1}'), (100, "running", UNCHANGED_TOAST), (100, "queued", None),
        (200, "success", UNCHANGED_TOAST),  # a column the table no longer sends is left as the mirror has it
    ]
    assert [c.lsn for c in versions] == [12, 13, 14, 18]  # each message's own position
    assert [c.committed_at for c in versions] == [stream[0][0].commit_time] * 3 + [stream[1][0].commit_time]
    assert [c.values["state"] for c in spool.versions("task_instance", 100)] == ["success"]

    # Spool batches of 2 rows, 1 (cut short by the new shape) and 1; segments of whole batches.
    monkeypatch.setattr(log_changes, "SEGMENT_CHANGES", 3)
    assert [segment.changes_read for segment in collapsed(spool)] == [3, 1]
    monkeypatch.setattr(log_changes, "SEGMENT_CHANGES", 2)
    first, second = collapsed(spool)
    assert [(r["task_id"], r["state"], r.get("next_kwargs")) for r in rows_of(first)] == \
        [("t1", "running", '{"big": 1}')]
    assert [(r["task_id"], r["state"], r.get("next_kwargs")) for r in rows_of(second)] == \
        [("t1", "success", None), ("t2", "queued", None)]
    # The first segment wrote t1's value; the second leaves it to the mirror.
    assert {group.columns for group in second.upserts} == {NAMES, NAMES[:-1]}


def test_a_transaction_the_peek_did_not_finish_is_never_applied(spool) -> None:
    read(spool, transaction(100, RELATION, Insert(7, row("a", "queued"))),
         [Begin(190, datetime(2026, 1, 2, tzinfo=UTC), 2), Insert(7, row("b", "queued", task="t2"))])
    assert [r["id"] for changes in collapsed(spool) for r in rows_of(changes)] == ["a"]
    assert [c.values["id"] for c in spool.versions("task_instance", 0)] == ["a"]
