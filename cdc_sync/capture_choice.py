"""Which capture mode a cycle reads through (``capture="auto" | "log" | "query"``), decided once per cycle before
anything is written, and explained in one line.

``query`` is the watermark mode, which every source and destination supports. ``log`` reads PostgreSQL's
write-ahead log; it is an explicit opt-in that fails early, naming the fix, when this source or destination cannot
do it. ``auto`` asks the same capability check and, until the log mode is complete, keeps the watermark mode and
says why in one info line (the check's reason when the log is not possible).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cdc_sync.config import SyncConfig
from cdc_sync.errors import CdcSyncError, ConfigError
from cdc_sync.sources import ENGINE_NAMES, open_log
from cdc_sync.sources.publication import LogNames

log = logging.getLogger("cdc_sync")

# Destinations whose dialect has the log mode's MERGE (unchanged TOAST values left as they are).
LOG_DESTINATIONS = frozenset({"duckdb", "postgresql"})


@dataclass(frozen=True)
class CaptureChoice:
    """The mode a cycle uses (``log`` or ``query``) and the one sentence that explains it."""

    mode: Literal["log", "query"]
    reason: str


def log_capture_refusal(config: SyncConfig, tables: Sequence[str]) -> str | None:
    """Why this source and destination cannot use log capture for ``tables`` (one sentence naming the fix), or None
    when they can. Asks the source only when the engines allow it."""
    if config.source_engine != "postgresql":
        name = ENGINE_NAMES.get(config.source_engine, config.source_engine)
        return f"log capture reads PostgreSQL's write-ahead log, and this source is {name}"
    if config.destination_engine not in LOG_DESTINATIONS:
        return (f"log capture does not write into {config.destination_engine} destinations yet (only "
                f"{', '.join(sorted(LOG_DESTINATIONS))})")
    with open_log(config.source_url, LogNames.for_schema(config.schema)) as source_log:
        return source_log.refusal(tables)


def choose_capture(config: SyncConfig, tables: Sequence[str]) -> CaptureChoice:
    """The capture mode of this cycle; ``capture="log"`` that cannot be honoured raises a :class:`ConfigError`."""
    if config.capture == "query":
        return CaptureChoice("query", "capture=query: the watermark mode was asked for")
    try:
        refusal = log_capture_refusal(config, tables)
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
        choice = CaptureChoice("query", "capture=auto uses the watermark mode: the source allows log capture, but "
                                        "auto does not choose it yet; opt in with capture=log (CLI --capture log)")
    log.info(choice.reason)
    return choice
