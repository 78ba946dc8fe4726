"""The rules of log capture's footprint on a PostgreSQL source, apart from the SQL that applies them: the names of
the replication slot and publication, the mark that proves cdc_sync made them, what a publication may list, and
whether a source allows log capture at all.

Ownership: cdc_sync drops or moves only what it made. Slots cannot carry a comment, so the proof is a pair. Setup
first creates the publication and, in the same transaction, comments it with :func:`ownership_mark` naming the slot;
only then does it create the slot, under the same name. A publication is cdc_sync's when it carries that exact
comment; a slot is cdc_sync's when it decodes with pgoutput in this database and a publication of cdc_sync's names
it. A slot or publication of the derived name without the mark was made by someone else and is never touched.

A publication must not break the source's own writes: PostgreSQL refuses an UPDATE or DELETE on a published table
that has no replica identity (REPLICA IDENTITY NOTHING, or DEFAULT without a primary key), or whose column list
leaves out a replica identity column. :func:`publication_problems` refuses such tables before anything is created.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cdc_sync.errors import ConfigError

NAME_PREFIX = "cdc_sync_"
# Slot names: lower-case letters, digits and underscores, at most NAMEDATALEN - 1 bytes.
MAX_NAME_LENGTH = 63
VALID_NAME = re.compile(r"^[a-z0-9_]{1,63}$")
MARK_PREFIX = "cdc_sync log capture; slot "
# PostgreSQL 15 added publication column lists: below it, secret columns would leave the source database.
COLUMN_LISTS_FROM = 150000


@dataclass(frozen=True)
class LogNames:
    """The replication slot and publication one destination schema's cycles read through."""

    slot: str
    publication: str

    @classmethod
    def for_schema(cls, schema: str, slot: str | None = None, publication: str | None = None) -> LogNames:
        """Names derived from the destination schema, each overridable; an override must be a valid slot name
        with cdc_sync's prefix, so that names alone already keep cdc_sync's objects apart from others'."""
        derived = derived_name(schema)
        names = cls(slot or derived, publication or derived)
        for what, name in (("slot", names.slot), ("publication", names.publication)):
            if not VALID_NAME.match(name) or not name.startswith(NAME_PREFIX):
                raise ConfigError(
                    f"Replication {what} name {name!r} is not usable: it must start with {NAME_PREFIX!r} and hold "
                    f"only lower-case letters, digits and underscores, at most {MAX_NAME_LENGTH} characters."
                )
        return names


def derived_name(schema: str) -> str:
    """``cdc_sync_`` and the schema name folded to a slot name's characters; a hash of the exact schema name is
    added whenever folding or shortening changed it, so two schemas never share a name."""
    folded = re.sub(r"[^a-z0-9_]", "_", schema.lower())
    name = NAME_PREFIX + folded
    if folded == schema and len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.sha256(schema.encode()).hexdigest()[:8]
    return f"{name[:MAX_NAME_LENGTH - len(digest) - 1]}_{digest}"


def ownership_mark(names: LogNames) -> str:
    """The comment on a publication cdc_sync made, naming the slot made with it."""
    return MARK_PREFIX + names.slot


@dataclass(frozen=True)
class PublishedTable:
    """A synced table and the columns that may leave the source (secret columns are not among them).

    ``column_list``: published with a column list. Only a table with a column left out gets one: PostgreSQL refuses
    to drop a column a publication lists, which would make an Airflow upgrade (``airflow db migrate``) fail on the
    columns it drops; a table published whole follows its columns as they change."""

    name: str
    columns: tuple[str, ...]
    column_list: bool = True


def with_column_lists(tables: Iterable[PublishedTable], identities: Mapping[str, ReplicaIdentity]) \
        -> list[PublishedTable]:
    """The tables as they are published: a column list where a column of the table is left out, else none."""
    published = []
    for table in tables:
        identity = identities.get(table.name)
        whole = identity is not None and set(identity.all_columns) <= set(table.columns)
        published.append(PublishedTable(table.name, table.columns, column_list=not whole))
    return published


def publication_shape(tables: Iterable[PublishedTable]) -> dict[str, tuple[frozenset[str], bool]]:
    """What decides whether a publication must change: each table's columns, and whether it has a column list."""
    return {table.name: (frozenset(table.columns), table.column_list) for table in tables}


@dataclass(frozen=True)
class ReplicaIdentity:
    """How PostgreSQL identifies a table's old rows: ``kind`` is pg_class.relreplident (d, n, f, i); ``columns``
    are those of the primary key (d) or chosen index (i), empty when there is none."""

    kind: str
    columns: tuple[str, ...]
    all_columns: tuple[str, ...]


def publication_problems(tables: Iterable[PublishedTable], identities: Mapping[str, ReplicaIdentity],
                         column_lists: bool) -> list[str]:
    """Why publishing ``tables`` would make the source refuse its own UPDATEs and DELETEs (or leak secrets); empty
    when it is safe."""
    problems: list[str] = []
    for table in tables:
        identity = identities.get(table.name)
        if identity is None:
            problems.append(f"table {table.name} does not exist in the source schema")
            continue
        if identity.kind == "n" or (identity.kind in "di" and not identity.columns):
            problems.append(f"table {table.name} has no replica identity (no primary key), so publishing it would "
                            "make PostgreSQL refuse its UPDATEs and DELETEs")
            continue
        excluded = [column for column in identity.all_columns if column not in table.columns]
        if not excluded:
            continue
        if not column_lists:
            problems.append(f"columns {', '.join(excluded)} of {table.name} must not leave the source, and this "
                            "PostgreSQL (before 15) cannot leave columns out of a publication")
            continue
        needed = identity.all_columns if identity.kind == "f" else identity.columns
        uncovered = [column for column in needed if column not in table.columns]
        if uncovered:
            problems.append(f"the replica identity of {table.name} includes {', '.join(uncovered)}, which must not "
                            "leave the source; PostgreSQL refuses UPDATEs of a table whose published columns "
                            "leave out its replica identity")
    return problems


@dataclass(frozen=True)
class SourceFacts:
    """What decides whether this source role may capture from the log (read in one query, plus the slot's and
    publication's status)."""

    wal_level: str
    server_version: int
    role: str
    superuser: bool
    replication: bool  # the REPLICATION attribute
    rds_replication: bool  # member of RDS's rds_replication role
    may_create_publication: bool  # CREATE on the database
    unowned_tables: tuple[str, ...]  # synced tables the role does not own (CREATE PUBLICATION needs ownership)
    slots_used: int
    slots_allowed: int
    slot_ready: bool = False  # cdc_sync's slot exists (made by a cycle, or by an admin's `cdc-sync capture setup`)
    publication_current: bool = False  # cdc_sync's publication lists exactly the synced tables and columns
    slot_retained_wal: int | None = None  # bytes of WAL cdc_sync's slot keeps from being recycled
    published_tables: tuple[str, ...] = ()  # the tables cdc_sync's publication lists (none: no publication yet)


def table_set_taken(published: Iterable[str], wanted: Iterable[str]) -> str | None:
    """Why ``capture=auto`` leaves cdc_sync's publication alone: it lists another set of tables than this cycle syncs,
    so another cycle of the schema reads it (a fan-out over tables, one mapped task per table) or the table options
    changed. Moving it would take the log from that cycle; None when the sets agree or there is no publication."""
    published, wanted = sorted(set(published)), sorted(set(wanted))
    if not published or published == wanted:
        return None
    return (f"cdc_sync's publication of this schema lists {', '.join(published)}, and this cycle syncs "
            f"{', '.join(wanted)}: one table set reads the log of a schema, and auto leaves the publication to the "
            "cycles of that set (a fan-out over tables takes the watermark mode, except for that set). To move it to "
            "this table set, run `cdc-sync capture setup` with this cycle's table options, or give capture=log")


def log_capture_refusal(facts: SourceFacts) -> str | None:
    """Why the log cannot be read from this source (one sentence with the fix), or None when it can.

    PostgreSQL lets only a superuser or a role with REPLICATION read a replication slot, even one an admin made
    (RDS and Aurora grant it through membership of ``rds_replication``). So a slot made by ``cdc-sync capture
    setup`` spares the cycle's role the rights to *create* the publication (CREATE on the database, owning the
    tables), never REPLICATION itself."""
    if facts.wal_level != "logical":
        return (f"wal_level is {facts.wal_level}; set wal_level=logical and restart the source to use log capture "
                "(RDS and Aurora: rds.logical_replication=1 in the parameter group and a reboot; Cloud SQL: the "
                "cloudsql.logical_decoding flag)")
    if facts.server_version < COLUMN_LISTS_FROM:
        return (f"the source runs PostgreSQL {facts.server_version // 10000}; log capture needs 15 or later, whose "
                "publication column lists keep secret columns inside the source database")
    if not (facts.superuser or facts.replication or facts.rds_replication):
        made = "the replication slot exists, but " if facts.slot_ready else ""
        return (f"{made}the source role {facts.role} lacks REPLICATION, which PostgreSQL requires to read a "
                f"replication slot: ALTER ROLE {facts.role} WITH REPLICATION (RDS and Aurora: GRANT rds_replication "
                f"TO {facts.role}; Cloud SQL: ALTER USER {facts.role} WITH REPLICATION)")
    if not facts.publication_current:
        if not (facts.superuser or facts.may_create_publication):
            return (f"the source role {facts.role} may not create the publication: grant it CREATE on the "
                    "database, or let an admin run `cdc-sync capture setup` once with the same table options")
        if facts.unowned_tables:
            return (f"the source role {facts.role} does not own {', '.join(facts.unowned_tables)}, and only a "
                    "table's owner may publish it: run `cdc-sync capture setup` with the same table options as "
                    "Airflow's own role once")
    if not facts.slot_ready and facts.slots_used >= facts.slots_allowed:
        return (f"all {facts.slots_allowed} replication slots of the source are in use: raise "
                "max_replication_slots, or drop an unused slot")
    return None
