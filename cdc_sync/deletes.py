"""Rows gone from the source: found by comparing keys only, never on an empty or partial read.

A cycle first compares cheap aggregates: the source's row count in the read's snapshot (taken on a helper thread
while the warehouse MERGEs) and the mirror's live rows. After an incremental read, equal counts are not enough, as
a row the reads missed and a row deleted balance out, so the key digests (:mod:`cdc_sync.key_digest`) of both sides
must agree as well, unless the source's statistics show that no row was deleted since the last check
(:func:`deletions_since`): then the counts cannot balance that way. Otherwise the source's keys are staged in the
warehouse and the rows absent from them follow the table's delete mode.
"""

from __future__ import annotations

import threading
from datetime import datetime

from cdc_sync import faults
from cdc_sync.destinations.base import Destination
from cdc_sync.destinations.dialect import ColumnSpec
from cdc_sync.key_digest import KeyDigest
from cdc_sync.plan import TablePlan
from cdc_sync.report import TableReport
from cdc_sync.sources import Horizon, SourceSnapshot
from cdc_sync.state import Watermark


class SourceCount:
    """The source table's row count in this snapshot, with its key digest where both sides can render the key
    (:mod:`cdc_sync.key_digest`), taken on a helper thread while the warehouse MERGEs.

    The count (a full scan or index scan on the source) and the MERGE (warehouse work) use different machines or
    cores, so they overlap. It starts only once the read stream is exhausted: the source connection is then idle,
    and only this thread uses it until :meth:`result` or :meth:`settle` joins it.
    """

    def __init__(self, snapshot: SourceSnapshot, plan: TablePlan, *, needed: bool, counts_suffice: bool = False,
                 ) -> None:
        """``counts_suffice``: the source reports no row deleted from the table since its last delete check (see
        :func:`deletions_since`), so equal counts prove equal key sets and no digest is taken."""
        self._snapshot, self._plan, self._needed = snapshot, plan, needed
        self.counts_suffice = counts_suffice
        self._thread: threading.Thread | None = None
        self._count: int | None = None
        self.digest: KeyDigest | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        if self._needed and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cdc_sync-source-count", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            plan = self._plan
            if not self.counts_suffice and plan.merge_key and not plan.hashed_columns.intersection(plan.merge_key):
                self.digest = self._snapshot.key_digest(plan.table, plan.merge_key)
            if self.digest is not None:
                self._count = self.digest.rows
            else:
                self._count = self._snapshot.count_rows(plan.table)
        except BaseException as error:  # raised in the cycle's thread by result()
            self._error = error

    def result(self) -> int:
        self.start()
        self.settle()
        if self._error is not None:
            raise self._error
        assert self._count is not None
        return self._count

    def settle(self) -> None:
        """Wait for the count to finish, so the snapshot is never closed under it."""
        if self._thread is not None:
            self._thread.join()


def deletions_since(plan: TablePlan, horizon: Horizon, previous: Watermark | None) -> tuple[bool, str | None]:
    """Whether rows may have been deleted from the table since its last delete check, and the token to keep.

    After a read, every source row of the snapshot is in the mirror, so the source's count exceeds the mirror's
    live rows by the rows deleted minus the rows the reads missed. With no row deleted, equal counts therefore prove
    equal key sets, and only then are they trusted alone. The source's statistics say whether a row was deleted
    (PostgreSQL counts them per table); a deletion they count late only makes a later cycle check again. Where
    they say nothing, the key digests are compared every time."""
    recorded = None if horizon.deletes_recorded is None else horizon.deletes_recorded.get(plan.name)
    token = None if recorded is None or plan.delete_mode == "ignore" else str(recorded)
    unchanged = token is not None and previous is not None and previous.deletes_recorded == token
    return not unchanged, token


def reconcile_deletes(destination: Destination, schema: str, plan: TablePlan, snapshot: SourceSnapshot,
                      source_rows: SourceCount | int, report: TableReport, now: datetime) -> tuple[int, int | None]:
    """Mark (or remove) the mirror's rows whose keys are gone from the source.

    ``source_rows`` is the source table's row count after a full read, or the count (and key digest) being taken
    of an incremental read's snapshot. Returns the rows marked deleted and, when known without asking again, the
    mirror's live rows after."""
    if plan.delete_mode == "ignore":
        return 0, None
    dialect = destination.dialect
    if isinstance(source_rows, int):
        live = int(destination.scalar(dialect.count_live(schema, plan.name)))
        # A full read MERGEd every source row of this snapshot, so equal counts mean equal key sets.
        if source_rows == live:
            return 0, live
    else:
        source_count = source_rows.result()
        mirror = mirror_key_digest(destination, schema, plan) if source_rows.digest is not None else None
        live = mirror.rows if mirror is not None else int(destination.scalar(dialect.count_live(schema, plan.name)))
        digests_agree = mirror is not None and mirror == source_rows.digest
        if source_count == live and (source_rows.counts_suffice or digests_agree):
            return 0, live
    keys = dialect.staging_name(plan.name, "keys")
    key_columns = key_specs(plan)  # the order read_keys streams them in
    destination.execute(dialect.drop_staging(keys))
    destination.execute(dialect.create_staging(keys, key_columns))
    rows_read = destination.load(keys, key_columns, snapshot.read_keys(plan.table, plan.merge_key))
    faults.point("deletes")
    if rows_read == 0 and not plan.may_become_empty:
        live = int(destination.scalar(dialect.count_live(schema, plan.name)))
        if live:
            report.warnings.append(
                f"The source read of {plan.name} came back empty while the mirror holds {live} live rows; "
                "deletions were not applied. Run `cdc-sync resync` if the table really was emptied."
            )
        return 0, live
    if plan.delete_mode == "hard":
        statement = dialect.hard_delete_absent(schema, plan.name, keys, plan.merge_key, plan.nullable_key)
    else:
        statement = dialect.soft_delete_absent(schema, plan.name, keys, plan.merge_key, plan.nullable_key, now)
    deleted = destination.execute(statement)
    destination.execute(dialect.drop_staging(keys))
    return max(deleted, 0), None


def key_specs(plan: TablePlan) -> tuple[ColumnSpec, ...]:
    """The merge key's warehouse columns, in key order."""
    by_name = {c.name: c for c in plan.columns}
    return tuple(by_name[name] for name in plan.merge_key)


def mirror_key_digest(destination: Destination, schema: str, plan: TablePlan) -> KeyDigest | None:
    """The mirror's live rows and key digest, or None where the warehouse cannot render this key."""
    statement = destination.dialect.key_digest(schema, plan.name, key_specs(plan))
    return None if statement is None else KeyDigest.from_row(destination.query(statement)[0])
