"""PostgreSQL's logical replication messages (the ``pgoutput`` plugin, protocol version 1) as typed Python objects.

``pg_logical_slot_peek_binary_changes`` returns one message per row, as bytea; :func:`decode_all` turns such bytes
into :data:`Message` objects. The format is PostgreSQL's "Logical Replication Message Formats" (section 55.9 of the
PostgreSQL 15 manual): big-endian integers, NUL-terminated strings, and per-row TupleData whose columns are NULL
(``n``), an unchanged TOASTed value that was not sent (``u``), text (``t``) or binary (``b``).

Things a consumer must not get wrong (peers have):

- ``u`` is not NULL: the value did not change and was not sent, so the mirror keeps what it has
  (:data:`UNCHANGED_TOAST`). It can appear in an UPDATE's new tuple whatever the table's REPLICA IDENTITY.
- Under REPLICA IDENTITY DEFAULT a DELETE carries only the key: the other columns come as NULL
  (:attr:`Delete.key_only`), which says nothing about their values.
- A Relation message can arrive again mid-stream after an ALTER TABLE; later rows follow the newest one.

No maintained PyPI package decodes pgoutput today (``pypgoutput`` 0.0.3 was last released in 2022 and is tied to
psycopg2; ``pgoutput-decoder`` has a single release), so this small decoder is the project's own.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cdc_sync.errors import SourceError

POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class Unchanged(enum.Enum):
    """A TOASTed value the UPDATE did not change, which PostgreSQL therefore did not send."""

    TOAST = "u"


UNCHANGED_TOAST = Unchanged.TOAST
# A column of a tuple: None for NULL, the value's text form, its binary form, or UNCHANGED_TOAST.
Value = str | bytes | None | Unchanged
Row = tuple[Value, ...]


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    commit_time: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True)
class Origin:
    """The transaction was replayed from another node (it carries a replication origin)."""

    commit_lsn: int
    name: str


@dataclass(frozen=True)
class RelationColumn:
    name: str
    type_oid: int
    type_modifier: int  # -1: none
    is_key: bool  # part of the replica identity


@dataclass(frozen=True)
class Relation:
    """A table's shape as the rows that follow it are encoded; sent again after it changes."""

    relation_id: int
    namespace: str
    name: str
    replica_identity: str  # pg_class.relreplident: d(efault), n(othing), f(ull), i(ndex)
    columns: tuple[RelationColumn, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)


@dataclass(frozen=True)
class Type:
    """A data type that is not built in (an enum, a domain, an extension's type), sent before it is first used."""

    type_oid: int
    namespace: str
    name: str


@dataclass(frozen=True)
class Insert:
    relation_id: int
    new: Row


@dataclass(frozen=True)
class Update:
    """``old`` is the old replica identity (``old_is_key``: only its key columns, sent when the key changed) or the
    whole old row (REPLICA IDENTITY FULL); None when neither was sent."""

    relation_id: int
    new: Row
    old: Row | None = None
    old_is_key: bool = False


@dataclass(frozen=True)
class Delete:
    """``old`` holds every column; with ``key_only`` only the key columns are values and the rest are NULL."""

    relation_id: int
    old: Row
    key_only: bool


@dataclass(frozen=True)
class Truncate:
    relation_ids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True)
class LogicalMessage:
    """A ``pg_logical_emit_message`` (sent only when the ``messages`` option is on)."""

    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message = Begin | Commit | Origin | Relation | Type | Insert | Update | Delete | Truncate | LogicalMessage

TRUNCATE_CASCADE = 1
TRUNCATE_RESTART_IDENTITY = 2


class DecodeError(SourceError):
    """Bytes that are not a pgoutput protocol 1 message (a newer protocol, or a damaged stream)."""


class _Reader:
    """Reads the protocol's big-endian integers, C strings and byte runs from one buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def _unpack(self, fmt: struct.Struct) -> int:
        if self.offset + fmt.size > len(self.data):
            raise DecodeError(f"A pgoutput message ended early (offset {self.offset} of {len(self.data)} bytes).")
        (value,) = fmt.unpack_from(self.data, self.offset)
        self.offset += fmt.size
        return value

    def int8(self) -> int:
        return self._unpack(_INT8)

    def int16(self) -> int:
        return self._unpack(_INT16)

    def int32(self) -> int:
        return self._unpack(_INT32)

    def signed32(self) -> int:
        return self._unpack(_SIGNED32)

    def int64(self) -> int:
        return self._unpack(_INT64)

    def byte(self) -> str:
        return chr(self._unpack(_BYTE))

    def timestamp(self) -> datetime:
        return POSTGRES_EPOCH + timedelta(microseconds=self._unpack(_SIGNED64))

    def string(self) -> str:
        end = self.data.find(b"\0", self.offset)
        if end < 0:
            raise DecodeError("A pgoutput string has no terminating NUL byte.")
        text = self.data[self.offset:end].decode()
        self.offset = end + 1
        return text

    def take(self, size: int) -> bytes:
        if size < 0 or self.offset + size > len(self.data):
            raise DecodeError(f"A pgoutput value of {size} bytes runs past the end of its message.")
        chunk = self.data[self.offset:self.offset + size]
        self.offset += size
        return chunk

    @property
    def exhausted(self) -> bool:
        return self.offset >= len(self.data)


_BYTE = struct.Struct("!B")
_INT8 = struct.Struct("!b")
_INT16 = struct.Struct("!H")
_INT32 = struct.Struct("!I")
_SIGNED32 = struct.Struct("!i")
_INT64 = struct.Struct("!Q")
_SIGNED64 = struct.Struct("!q")


def _tuple(reader: _Reader) -> Row:
    """A TupleData part. The hot loop of decoding (one pass per column of every changed row), so it reads the buffer
    directly instead of through the reader's methods."""
    data, offset = reader.data, reader.offset
    values: list[Value] = []
    append = values.append
    try:
        (count,) = _INT16.unpack_from(data, offset)
        offset += 2
        for _ in range(count):
            kind = data[offset]
            offset += 1
            if kind == _TEXT:
                (size,) = _INT32.unpack_from(data, offset)
                start, offset = offset + 4, offset + 4 + size
                if offset > len(data):
                    raise DecodeError(f"A pgoutput value of {size} bytes runs past the end of its message.")
                append(data[start:offset].decode())
            elif kind == _NULL:
                append(None)
            elif kind == _UNCHANGED:
                append(UNCHANGED_TOAST)
            elif kind == _BINARY:
                (size,) = _INT32.unpack_from(data, offset)
                start, offset = offset + 4, offset + 4 + size
                if offset > len(data):
                    raise DecodeError(f"A pgoutput value of {size} bytes runs past the end of its message.")
                append(data[start:offset])
            else:
                raise DecodeError(f"Unknown pgoutput tuple column kind {chr(kind)!r}.")
    except (IndexError, struct.error):
        raise DecodeError(f"A pgoutput message ended early (offset {offset} of {len(data)} bytes).") from None
    reader.offset = offset
    return tuple(values)


_TEXT, _NULL, _UNCHANGED, _BINARY = b"t"[0], b"n"[0], b"u"[0], b"b"[0]


def _expect(reader: _Reader, *kinds: str) -> str:
    kind = reader.byte()
    if kind not in kinds:
        raise DecodeError(f"Expected one of {', '.join(kinds)} in a pgoutput message, found {kind!r}.")
    return kind


def _relation(reader: _Reader) -> Relation:
    relation_id, namespace, name, identity = reader.int32(), reader.string(), reader.string(), reader.byte()
    columns = []
    for _ in range(reader.int16()):
        flags = reader.int8()
        columns.append(RelationColumn(name=reader.string(), type_oid=reader.int32(),
                                      type_modifier=reader.signed32(), is_key=bool(flags & 1)))
    return Relation(relation_id, namespace, name, identity, tuple(columns))


def _update(reader: _Reader) -> Update:
    relation_id = reader.int32()
    kind = _expect(reader, "K", "O", "N")
    if kind == "N":
        return Update(relation_id, _tuple(reader))
    old = _tuple(reader)
    _expect(reader, "N")
    return Update(relation_id, _tuple(reader), old, old_is_key=kind == "K")


def _delete(reader: _Reader) -> Delete:
    relation_id = reader.int32()
    kind = _expect(reader, "K", "O")
    return Delete(relation_id, _tuple(reader), key_only=kind == "K")


def _truncate(reader: _Reader) -> Truncate:
    count, options = reader.int32(), reader.int8()
    return Truncate(tuple(reader.int32() for _ in range(count)), cascade=bool(options & TRUNCATE_CASCADE),
                    restart_identity=bool(options & TRUNCATE_RESTART_IDENTITY))


def _logical_message(reader: _Reader) -> LogicalMessage:
    flags, lsn, prefix = reader.int8(), reader.int64(), reader.string()
    return LogicalMessage(bool(flags & 1), lsn, prefix, reader.take(reader.int32()))


def _insert(reader: _Reader) -> Insert:
    relation_id = reader.int32()
    _expect(reader, "N")
    return Insert(relation_id, _tuple(reader))


_DECODERS = {
    "B": lambda reader: Begin(reader.int64(), reader.timestamp(), reader.int32()),
    "C": lambda reader: Commit(reader.int8(), reader.int64(), reader.int64(), reader.timestamp()),
    "O": lambda reader: Origin(reader.int64(), reader.string()),
    "R": _relation,
    "Y": lambda reader: Type(reader.int32(), reader.string(), reader.string()),
    "I": _insert,
    "U": _update,
    "D": _delete,
    "T": _truncate,
    "M": _logical_message,
}


def decode_all(data: bytes) -> Iterator[Message]:
    """Every message in ``data`` (one row of the slot functions holds one; a concatenation is read in turn)."""
    reader = _Reader(bytes(data))
    while not reader.exhausted:
        kind = reader.byte()
        decoder = _DECODERS.get(kind)
        if decoder is None:
            raise DecodeError(
                f"Unknown pgoutput message type {kind!r}: only protocol version 1 is read (ask for proto_version 1)."
            )
        yield decoder(reader)


def decode(data: bytes) -> Message:
    """The single message in ``data``."""
    messages = list(decode_all(data))
    if len(messages) != 1:
        raise DecodeError(f"Expected one pgoutput message, found {len(messages)}.")
    return messages[0]


def format_lsn(lsn: int) -> str:
    """An LSN in PostgreSQL's text form (``16/B374D848``)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)
