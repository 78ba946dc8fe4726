"""What cdc_sync knows about Airflow's own tables, across Airflow 2.10/2.11 and 3.x.

Introspection tells what a table *is*; the catalog tells what its columns *mean*: which cursor is reliable, which
key stays stable across retries, which columns hold secrets. Tables absent from the catalog are handled from
introspection alone (primary key, full sync).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_TABLES: tuple[str, ...] = (
    "ab_permission",
    "ab_role",
    "ab_user",
    "dag",
    "dag_run",
    "dag_tag",
    "import_error",
    "job",
    "task_fail",
    "task_instance",
)


@dataclass(frozen=True)
class TableKnowledge:
    """Facts about one Airflow table that introspection cannot tell."""

    # Candidate cursors in order of preference; the first one present in the table is used.
    # A timestamp cursor is set by the application at flush time, so reads overlap and stop at the horizon.
    cursors: tuple[str, ...] = ()
    # Append-only tables: rows are inserted with an increasing id and never updated.
    append_only_id: str | None = None
    # Candidate merge keys in order of preference; the first whose columns all exist is used.
    natural_keys: tuple[tuple[str, ...], ...] = ()
    # Payloads that hold secrets without their names saying so: never copied unless the user opts in. Columns
    # whose names mark a credential are excluded in every table by cdc_sync.secrets, whether listed here or not.
    sensitive_columns: frozenset[str] = field(default_factory=frozenset)
    # Personal data: copied by default, hashed on request.
    personal_columns: frozenset[str] = field(default_factory=frozenset)
    # The table legitimately becomes empty (so an empty read may delete every mirrored row).
    may_become_empty: bool = False


TABLES: dict[str, TableKnowledge] = {
    # updated_at is bumped by the ORM on every change of these tables.
    "dag_run": TableKnowledge(cursors=("updated_at",), natural_keys=(("dag_id", "run_id"),)),
    # Airflow 3 gives task_instance a UUID id that changes on every retry or clear: the stable identity is the
    # natural key, which is also Airflow 2's primary key.
    "task_instance": TableKnowledge(
        cursors=("updated_at",), natural_keys=(("dag_id", "task_id", "run_id", "map_index"),)
    ),
    "task_instance_history": TableKnowledge(cursors=("updated_at",)),
    "dag_version": TableKnowledge(cursors=("last_updated",)),
    "asset": TableKnowledge(cursors=("updated_at",)),
    "asset_alias": TableKnowledge(),
    "dataset": TableKnowledge(cursors=("updated_at",)),
    "asset_event": TableKnowledge(append_only_id="id", may_become_empty=True),
    "dataset_event": TableKnowledge(append_only_id="id", may_become_empty=True),
    "log": TableKnowledge(append_only_id="id", may_become_empty=True),
    # No reliable cursor: full sync (or a change detector on PostgreSQL).
    "dag": TableKnowledge(),
    "dag_tag": TableKnowledge(may_become_empty=True),
    "job": TableKnowledge(may_become_empty=True),
    "import_error": TableKnowledge(may_become_empty=True),
    # Airflow 2 only: one row inserted per failed attempt, never updated.
    "task_fail": TableKnowledge(append_only_id="id", may_become_empty=True),
    "dag_warning": TableKnowledge(may_become_empty=True),
    "xcom": TableKnowledge(may_become_empty=True),
    "trigger": TableKnowledge(sensitive_columns=frozenset({"kwargs"}), may_become_empty=True),
    "callback_request": TableKnowledge(may_become_empty=True),
    "ab_user": TableKnowledge(
        sensitive_columns=frozenset({"password"}),
        personal_columns=frozenset({"email", "first_name", "last_name", "username"}),
    ),
    # registration_hash is the token that confirms a self-registration: as good as a password until used.
    "ab_register_user": TableKnowledge(
        sensitive_columns=frozenset({"password", "registration_hash"}),
        personal_columns=frozenset({"email", "first_name", "last_name", "username"}),
        may_become_empty=True,
    ),
    "connection": TableKnowledge(sensitive_columns=frozenset({"password", "extra"}), may_become_empty=True),
    "variable": TableKnowledge(sensitive_columns=frozenset({"val"}), may_become_empty=True),
    # A web session: its id is the cookie that signs a user in, its data the session's contents.
    "session": TableKnowledge(sensitive_columns=frozenset({"session_id", "data"}), may_become_empty=True),
    # Airflow 3.3: a connection's settings sent to a worker for a test, password and token included (by the rule).
    "connection_test_request": TableKnowledge(sensitive_columns=frozenset({"extra"}), may_become_empty=True),
    # Airflow 3: a callback's import path and its keyword arguments, which may carry credentials as trigger.kwargs
    # do; a deadline alert keeps the same definition.
    "callback": TableKnowledge(sensitive_columns=frozenset({"data"}), may_become_empty=True),
    "deadline_alert": TableKnowledge(sensitive_columns=frozenset({"callback_def"})),
    # Airflow 3.3: free-form state a task or an asset watcher keeps for itself (an external job's handle, a
    # session, a resume token); only the keys are of use to a mirror.
    "task_state_store": TableKnowledge(sensitive_columns=frozenset({"value"}), may_become_empty=True),
    "asset_state_store": TableKnowledge(sensitive_columns=frozenset({"value"}), may_become_empty=True),
    # Airflow 3: a bundle's view URL signed with the Fernet key; a repository URL may carry its credentials.
    "dag_bundle": TableKnowledge(sensitive_columns=frozenset({"signed_url_template"})),
}

# What identifies an Airflow metadata database, in 2.10/2.11 and 3.x alike: Alembic's revision table (Airflow
# migrates its schema with Alembic) and the core tables every version has (see cdc_sync.ownership).
MIGRATION_TABLE = "alembic_version"
CORE_TABLES: tuple[str, ...] = ("dag", "dag_run", "task_instance")

# Airflow's own bookkeeping that a mirror never needs.
NEVER_MIRRORED: frozenset[str] = frozenset({"alembic_version", "alembic_version_fab"})


def knowledge(table: str) -> TableKnowledge:
    return TABLES.get(table, TableKnowledge())

# Columns that ``airflow db migrate`` from 2.x to 3.x retypes beyond what the mirror column holds (PostgreSQL
# shown; the other engines change the same columns). The mirror keeps the old column, with its history, under
# kept_column_name(); a new column takes the new type and is filled for every live row.
UPGRADE_RETYPED_COLUMNS: frozenset[tuple[str, str]] = frozenset({
    ("dag_run", "conf"),  # pickled bytes → JSON
    ("xcom", "value"),  # pickled or JSON bytes → JSON
    ("task_instance", "trigger_timeout"),  # naive → aware timestamp
    ("task_instance_history", "trigger_timeout"),
    ("dag_run_note", "user_id"),  # integer → text (auth managers' user ids)
    ("task_instance_note", "user_id"),
})


def kept_column_name(column: str) -> str:
    """Where the mirror keeps a column's Airflow 2 history after an upgrade retyped it."""
    return f"{column}_airflow2"
