"""The one exception tree of cdc_sync.

::

    CdcSyncError
     ├── ConfigError              bad input: fix the arguments, URL or settings
     │    ├── UnknownTableError   a table the user named is not in the source
     │    ├── NotAnAirflowDatabaseError   the source holds no Airflow metadata (wrong database or schema)
     │    └── ForeignTableError   a destination table of that name exists and cdc_sync did not create it
     ├── SourceError              the source database failed or refused
     ├── DestinationError         the warehouse failed or refused
     │    ├── TransientDestinationError   worth retrying (connection drop, lock timeout, serialization)
     │    └── TerminalDestinationError    retrying will not help (permission, syntax, type)
     ├── SchemaDriftError         the source changed in a way the warehouse cannot follow
     ├── CycleAlreadyRunningError another cycle holds the lock on this destination schema
     └── StateError               the state tables are newer than this version, or belong to another source

Every message names the problem and the fix, and never contains a credential: URLs are always rendered
through :func:`cdc_sync.urls.redact`.
"""

from __future__ import annotations


class CdcSyncError(Exception):
    """Base of every error cdc_sync raises on purpose."""


class ConfigError(CdcSyncError):
    """The request cannot be carried out as given; nothing was written."""


class UnknownTableError(ConfigError):
    """A table named by the user does not exist in the source database."""

    def __init__(self, message: str, missing: tuple[str, ...] = (), requested: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.missing = missing  # the named tables the source lacks
        self.requested = requested  # every table named


class NotAnAirflowDatabaseError(ConfigError):
    """The source is not an Airflow metadata database (or Airflow's tables are in a schema it was not told of)."""


class ForeignTableError(ConfigError):
    """The destination schema holds a table of a mirrored table's name that cdc_sync did not create."""


class SourceError(CdcSyncError):
    """Reading the source database failed."""


class DestinationError(CdcSyncError):
    """Writing to the warehouse failed."""


class TransientDestinationError(DestinationError):
    """A failure that a retry may cure (dropped connection, lock timeout, serialization failure)."""


class TerminalDestinationError(DestinationError):
    """A failure that a retry cannot cure (permission, bad SQL, impossible type)."""


class SchemaDriftError(CdcSyncError):
    """A source table changed in a way the mirror cannot follow without a resync."""


class SlotCreationBlocked(SourceError):
    """PostgreSQL could not make the replication slot within the wait a cycle allows: a write transaction that was
    running on the server when creation began had not ended. Nothing was created."""


class CycleAlreadyRunningError(CdcSyncError):
    """Another cycle holds the lock on the destination schema."""


class StateError(CdcSyncError):
    """The state tables in the destination cannot be used as they are."""


class TableSyncError(CdcSyncError):
    """Raised after a cycle in which some tables failed; the others were committed."""

    def __init__(self, message: str, failed_tables: dict[str, str]) -> None:
        super().__init__(message)
        self.failed_tables = failed_tables
