"""cdc_sync: mirror an Apache Airflow metadata database into a warehouse, exactly and cheaply."""

from __future__ import annotations

from cdc_sync.api import resync, status, sync, verify
from cdc_sync.catalog import DEFAULT_TABLES
from cdc_sync.errors import (
    CdcSyncError,
    ConfigError,
    CycleAlreadyRunningError,
    DestinationError,
    ForeignTableError,
    NotAnAirflowDatabaseError,
    SchemaDriftError,
    SourceError,
    StateError,
    TableSyncError,
    UnknownTableError,
)
from cdc_sync.report import CycleReport, TableReport

__all__ = [
    "DEFAULT_TABLES",
    "CdcSyncError",
    "ConfigError",
    "CycleAlreadyRunningError",
    "CycleReport",
    "DestinationError",
    "ForeignTableError",
    "NotAnAirflowDatabaseError",
    "SchemaDriftError",
    "SourceError",
    "StateError",
    "TableReport",
    "TableSyncError",
    "UnknownTableError",
    "resync",
    "status",
    "sync",
    "verify",
]
