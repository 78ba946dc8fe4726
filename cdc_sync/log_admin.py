"""What an admin does once for log capture: create, inspect and drop the source's replication slot and publication
for one destination schema (``cdc-sync capture setup | status | drop``).

The publication lists exactly the tables a cycle with the same options would sync, and of each only the columns
it would copy, so secret columns never leave the source database (:mod:`cdc_sync.sources.publication`).
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc_sync.config import SyncConfig
from cdc_sync.ownership import require_airflow_source
from cdc_sync.plan import plan_table, select_tables, validate_column_options
from cdc_sync.sources import open_log, open_source
from cdc_sync.sources.postgres_log import LogStatus
from cdc_sync.sources.publication import LogNames, PublishedTable
from cdc_sync.urls import scrubbed_errors


@dataclass(frozen=True)
class LogSetup:
    """What setup did, one line each, and the warnings of the table selection."""

    done: list[str]
    warnings: list[str]


def log_names(config: SyncConfig, slot: str | None = None, publication: str | None = None) -> LogNames:
    return LogNames.for_schema(config.schema, slot, publication)


def published_tables(config: SyncConfig) -> tuple[list[PublishedTable], list[str]]:
    """The tables a cycle would sync, each with the columns it would copy; and the selection's warnings."""
    with open_source(config.source_url) as source:
        available = source.list_tables()
        require_airflow_source(source, available)
        tables, warnings = select_tables(config, available)
        schemas = source.describe_tables(tables)
    validate_column_options(config, schemas)
    plans = [plan_table(schemas[name], config) for name in tables]
    return [PublishedTable(plan.name, plan.column_names) for plan in plans], warnings


def setup(config: SyncConfig, names: LogNames) -> LogSetup:
    """Create or bring up to date the publication, then the slot."""
    with scrubbed_errors(config.source_url), open_log(config.source_url, names) as log:
        tables, warnings = published_tables(config)
        return LogSetup(log.setup(tables), warnings)


def status(config: SyncConfig, names: LogNames) -> LogStatus:
    with scrubbed_errors(config.source_url), open_log(config.source_url, names) as log:
        return log.status()


def drop(config: SyncConfig, names: LogNames) -> list[str]:
    """Drop the slot (so the source may recycle its WAL) and the publication, only if cdc_sync made them."""
    with scrubbed_errors(config.source_url), open_log(config.source_url, names) as log:
        return log.drop()
