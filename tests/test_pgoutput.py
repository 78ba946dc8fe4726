"""The pgoutput decoder (cdc_sync.sources.pgoutput) against what PostgreSQL really sends: one slot, one stream of
writes covering every message of protocol version 1, decoded and compared exactly."""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from cdc_sync.sources.pgoutput import (
    UNCHANGED_TOAST,
    Begin,
    Commit,
    DecodeError,
    Delete,
    Insert,
    LogicalMessage,
    Message,
    Origin,
    Relation,
    RelationColumn,
    Truncate,
    Type,
    Update,
    decode,
    decode_all,
    format_lsn,
    parse_lsn,
)
from tests.airflow_schema import PG_ADMIN

INT4, TEXT = 23, 25
PEEK_SQL = (
    "SELECT lsn::text, xid::text::bigint, data FROM pg_logical_slot_peek_binary_changes("
    "%s, NULL, NULL, 'proto_version', '1', 'publication_names', 'pub', 'messages', 'true')"
)


@dataclass
class Transaction:
    xid: int
    begin: Begin
    commit: Commit
    messages: list[Message]


@dataclass
class Stream:
    transactions: list[Transaction]
    run: int
    audit: int
    mood: int
    big: str
    origin: str
    written_at: datetime


def transactions(rows: list[tuple[str, int, bytes]]) -> list[Transaction]:
    """Rows of the slot function grouped by transaction; every one framed by a Begin and a Commit of its xid."""
    grouped: list[Transaction] = []
    current: list[Message] = []
    for _, xid, data in rows:
        for message in decode_all(data):
            current.append(message)
            if isinstance(message, Commit):
                begin = current[0]
                assert isinstance(begin, Begin) and begin.xid == xid
                grouped.append(Transaction(xid, begin, message, current[1:-1]))
                current = []
    assert current == []
    return grouped


@pytest.fixture(scope="module")
def stream(logical_database: str) -> Stream:
    slot = f"cdc_test_{uuid.uuid4().hex[:12]}"
    origin = f"cdc_test_origin_{uuid.uuid4().hex[:12]}"
    conninfo = PG_ADMIN.replace("dbname=postgres", f"dbname={logical_database}")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        run = connection.execute
        run("CREATE TYPE mood AS ENUM ('calm', 'busy')")
        run("CREATE TABLE run (id int PRIMARY KEY, state text, conf text, mood mood)")
        # Out of line and uncompressed, so the value is TOASTed whatever its content.
        run("ALTER TABLE run ALTER COLUMN conf SET STORAGE EXTERNAL")
        run("CREATE TABLE audit (id int PRIMARY KEY, note text)")
        run("ALTER TABLE audit REPLICA IDENTITY FULL")
        run("CREATE PUBLICATION pub FOR TABLE run, audit")
        run("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        written_at = datetime.now(UTC)
        big = "".join(uuid.uuid4().hex for _ in range(400))  # 12.8 kB
        run("INSERT INTO run VALUES (1, 'queued', %s, 'calm')", (big,))
        run("UPDATE run SET state = 'running' WHERE id = 1")  # conf untouched: 'u'
        run("UPDATE run SET id = 2 WHERE id = 1")  # the key changes: the old key comes along
        run("INSERT INTO audit VALUES (1, 'a')")
        run("UPDATE audit SET note = 'b'")  # REPLICA IDENTITY FULL: the whole old row
        run("DELETE FROM run WHERE id = 2")  # REPLICA IDENTITY DEFAULT: the key only
        with connection.transaction():
            run("INSERT INTO run VALUES (10, 'a', NULL, NULL)")
            run("SAVEPOINT first")
            run("INSERT INTO run VALUES (11, 'rolled back', NULL, NULL)")
            run("ROLLBACK TO SAVEPOINT first")
            run("SAVEPOINT second")
            run("INSERT INTO run VALUES (12, 'released', NULL, NULL)")
            run("RELEASE SAVEPOINT second")
        run("ALTER TABLE run ADD COLUMN note text")
        run("INSERT INTO run VALUES (20, 'd', NULL, 'busy', 'x')")
        run("TRUNCATE run, audit")
        run("TRUNCATE audit RESTART IDENTITY CASCADE")
        run("SELECT pg_replication_origin_create(%s)", (origin,))
        try:
            run("SELECT pg_replication_origin_session_setup(%s)", (origin,))
            with connection.transaction():
                run("SELECT pg_replication_origin_xact_setup('0/ABCDEF', now())")
                run("INSERT INTO audit VALUES (5, 'replayed')")
            run("SELECT pg_replication_origin_session_reset()")
            run("SELECT pg_logical_emit_message(true, 'cdc', 'hello')")
            rows = run(PEEK_SQL, (slot,)).fetchall()
            oids = run("SELECT 'run'::regclass::oid, 'audit'::regclass::oid, 'mood'::regtype::oid").fetchone()
        finally:
            run("SELECT pg_replication_origin_session_reset() WHERE pg_replication_origin_session_is_setup()")
            run("SELECT pg_replication_origin_drop(%s)", (origin,))
    return Stream(transactions(rows), *oids, big=big, origin=origin, written_at=written_at)


def run_relation(stream: Stream, *extra: RelationColumn) -> Relation:
    return Relation(stream.run, "public", "run", "d", (
        RelationColumn("id", INT4, -1, True), RelationColumn("state", TEXT, -1, False),
        RelationColumn("conf", TEXT, -1, False), RelationColumn("mood", stream.mood, -1, False), *extra,
    ))


def audit_relation(stream: Stream) -> Relation:
    # Under REPLICA IDENTITY FULL every column is part of the identity.
    return Relation(stream.audit, "public", "audit", "f", (RelationColumn("id", INT4, -1, True),
                                                           RelationColumn("note", TEXT, -1, True)))


def test_every_transaction_is_framed_and_ordered(stream: Stream) -> None:
    assert len(stream.transactions) == 12
    previous_end = 0
    for transaction in stream.transactions:
        begin, commit = transaction.begin, transaction.commit
        assert commit.commit_lsn == begin.final_lsn and commit.end_lsn > commit.commit_lsn > previous_end
        assert commit.commit_time == begin.commit_time
        assert stream.written_at - timedelta(seconds=1) <= commit.commit_time <= datetime.now(UTC)
        assert commit.flags == 0
        previous_end = commit.end_lsn


def test_inserts_carry_the_whole_row_and_unchanged_toast_is_not_null(stream: Stream) -> None:
    inserted, updated, key_changed = (t.messages for t in stream.transactions[:3])
    # A non-built-in type is described before the first relation that uses it.
    assert inserted == [Type(stream.mood, "public", "mood"), run_relation(stream),
                        Insert(stream.run, ("1", "queued", stream.big, "calm"))]
    assert updated == [Update(stream.run, ("1", "running", UNCHANGED_TOAST, "calm"))]
    assert key_changed == [Update(stream.run, ("2", "running", UNCHANGED_TOAST, "calm"), old=("1", None, None, None),
                                  old_is_key=True)]


def test_replica_identity_full_sends_the_old_row_and_default_deletes_send_the_key(stream: Stream) -> None:
    inserted, updated, deleted = (t.messages for t in stream.transactions[3:6])
    assert inserted == [audit_relation(stream), Insert(stream.audit, ("1", "a"))]
    assert updated == [Update(stream.audit, ("1", "b"), old=("1", "a"), old_is_key=False)]
    assert deleted == [Delete(stream.run, ("2", None, None, None), key_only=True)]


def test_savepoints_rolled_back_leave_nothing_and_released_ones_commit(stream: Stream) -> None:
    assert stream.transactions[6].messages == [Insert(stream.run, ("10", "a", None, None)),
                                               Insert(stream.run, ("12", "released", None, None))]


def test_an_altered_table_is_described_again_before_its_next_row(stream: Stream) -> None:
    assert stream.transactions[7].messages == [
        Type(stream.mood, "public", "mood"), run_relation(stream, RelationColumn("note", TEXT, -1, False)),
        Insert(stream.run, ("20", "d", None, "busy", "x")),
    ]


def test_truncate_names_its_tables_and_options(stream: Stream) -> None:
    both, restart = (t.messages for t in stream.transactions[8:10])
    assert both[-1] == Truncate((stream.run, stream.audit), cascade=False, restart_identity=False)
    assert {type(message) for message in both[:-1]} <= {Type, Relation}
    assert restart == [audit_relation(stream), Truncate((stream.audit,), cascade=True, restart_identity=True)]


def test_origin_and_logical_messages(stream: Stream) -> None:
    replayed, emitted = stream.transactions[10:12]
    assert replayed.messages == [Origin(parse_lsn("0/ABCDEF"), stream.origin), audit_relation(stream),
                                 Insert(stream.audit, ("5", "replayed"))]
    assert emitted.messages == [LogicalMessage(True, emitted.begin.final_lsn, "cdc", b"hello")]


def test_lsn_text_round_trips() -> None:
    for text in ("0/0", "0/ABCDEF", "16/B374D848", "FFFFFFFF/FFFFFFFF"):
        assert format_lsn(parse_lsn(text)) == text


@pytest.mark.parametrize(("data", "problem"), [
    (b"I\x00\x00\x00\x01N\x00\x01t\x00\x00\x00\x09abc", "runs past the end"),
    (b"B\x00\x00", "ended early"),
    (b"I\x00\x00\x00\x01N\x00\x01x", "column kind 'x'"),
    (b"S\x00\x00\x00\x01", "message type 'S'"),  # a protocol 2 stream-start message
    (b"D\x00\x00\x00\x01N\x00\x00", "Expected one of K, O"),
    (b"Y\x00\x00\x00\x01public", "no terminating NUL"),
])
def test_malformed_bytes_fail_with_a_clear_error(data: bytes, problem: str) -> None:
    with pytest.raises(DecodeError, match=problem):
        decode(data)


def test_decode_wants_exactly_one_message() -> None:
    insert = b"I" + struct.pack("!I", 7) + b"N" + struct.pack("!H", 1) + b"n"
    assert decode(insert) == Insert(7, (None,))
    with pytest.raises(DecodeError, match="found 2"):
        decode(insert * 2)
