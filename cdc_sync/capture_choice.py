"""Which capture mode a cycle reads through (``capture="auto" | "log" | "query"``), decided once per cycle before
anything is written, and explained in one line.

``query`` is the watermark mode, which every source and destination supports. ``log`` reads PostgreSQL's
write-ahead log; it is an explicit opt-in that fails early, naming the fix, when this source or destination cannot
do it. ``auto`` asks the same capability check and reads the log when it passes, else keeps the watermark mode and
says exactly why and what would enable the log, in one info line.

Switching a mirror between modes is cheap in both directions (:mod:`cdc_sync.log_capture`): the watermark mode's
position stays valid in the log mode, so the first log cycle of a table reads only its rows changed since its last
query cycle, and the first query cycle after log cycles reads the rows changed since the table's last read through
the query path. Neither is a full copy, and neither repeats: each stores the position of the mode it ran in.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cdc_sync.config import SyncConfig
from cdc_sync.errors import CdcSyncError, ConfigError
from cdc_sync.sources import ENGINE_NAMES, open_log
from cdc_sync.sources.publication import (
    LogNames,
    PublishedTable,
    SourceFacts,
    log_capture_refusal,
    table_set_taken,
)

log = logging.getLogger("cdc_sync")

# Destinations whose dialect has the log mode's MERGE (unchanged TOAST values left as they are).
LOG_DESTINATIONS = frozenset({"duckdb", "postgresql"})
MIB = 1 << 20


@dataclass(frozen=True)
class CaptureChoice:
    """The mode a cycle uses (``log`` or ``query``) and the one sentence that explains it."""

    mode: Literal["log", "query"]
    reason: str


def engine_refusal(config: SyncConfig) -> str | None:
    """Why these engines cannot use log capture (asks no server), or None when they can."""
    if config.source_engine != "postgresql":
        name = ENGINE_NAMES.get(config.source_engine, config.source_engine)
        return (f"log capture reads PostgreSQL's write-ahead log, and this source is {name} (managed Airflow "
                "services such as MWAA, Cloud Composer and Astro do not offer it either)")
    if config.destination_engine not in LOG_DESTINATIONS:
        return (f"log capture does not write into {config.destination_engine} destinations yet (only "
                f"{', '.join(sorted(LOG_DESTINATIONS))})")
    return None


def source_facts(config: SyncConfig, tables: Sequence[PublishedTable]) -> SourceFacts:
    with open_log(config.source_url, LogNames.for_schema(config.schema)) as source_log:
        return source_log.facts(tables)


def log_capture_refusal_for(config: SyncConfig, tables: Sequence[PublishedTable]) -> str | None:
    """Why this source and destination cannot use log capture for ``tables`` (one sentence naming the fix), or None
    when they can. Asks the source only when the engines allow it."""
    refusal = engine_refusal(config)
    if refusal is not None:
        return refusal
    facts = source_facts(config, tables)
    refusal = log_capture_refusal(facts)
    if refusal is None and config.capture == "auto":
        # The slot is another table set's then: it reads and advances it.
        return table_set_taken(facts.published_tables, (table.name for table in tables))
    if refusal is not None and facts.slot_ready:
        # The mirror was in the log mode (or an admin set it up): nothing advances the slot while cycles query.
        retained = f"{(facts.slot_retained_wal or 0) / MIB:,.0f} MiB"
        refusal += (f"; cdc_sync's replication slot of this schema keeps {retained} of WAL on the source: drop it "
                    "with `cdc-sync capture drop` if the mirror stays in the watermark mode")
    return refusal


def choose_capture(config: SyncConfig, tables: Sequence[PublishedTable]) -> CaptureChoice:
    """The capture mode of this cycle; ``capture="log"`` that cannot be honoured raises a :class:`ConfigError`."""
    if config.capture == "query":
        return CaptureChoice("query", "capture=query: the watermark mode was asked for")
    try:
        refusal = log_capture_refusal_for(config, tables)
    except CdcSyncError as error:
        if config.capture == "log":
            raise
        refusal = f"the capability check failed ({error})"
    if config.capture == "log":
        if refusal:
            raise ConfigError(f"capture=log is not possible: {refusal}. Fix that, or use capture=query (or auto, "
                              "which falls back to the watermark mode by itself).")
        return CaptureChoice("log", "capture=log: reading the source's write-ahead log")
    if refusal:
        choice = CaptureChoice("query", f"capture=auto uses the watermark mode: {refusal}")
    else:
        slot = LogNames.for_schema(config.schema).slot
        choice = CaptureChoice("log", f"capture=auto reads the source's write-ahead log through replication slot "
                                      f"{slot}: the source runs with wal_level=logical, and its role may read the slot")
    log.info(choice.reason)
    return choice
