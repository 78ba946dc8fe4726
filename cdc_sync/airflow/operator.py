"""The operator behind ``@task.datacoves_airflow_db_sync``: one task run is one cdc_sync cycle.

Arguments are checked when the DAG is parsed, without touching any database; connections are read and the
source is introspected only when the task runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cdc_sync.airflow import resolve
from cdc_sync.airflow.compat import AirflowFailException, AirflowSkipException, BaseOperator, OutletAsset
from cdc_sync.airflow.connections import engine_for_db_type
from cdc_sync.airflow.naming import default_destination_schema, table_asset_uri
from cdc_sync.api import sync, verify
from cdc_sync.catalog import DEFAULT_TABLES
from cdc_sync.config import CAPTURE_MODES, DELETE_MODES
from cdc_sync.errors import ConfigError, UnknownTableError
from cdc_sync.progress import ProgressLines
from cdc_sync.report import CycleReport
from cdc_sync.urls import redact, with_source_schema

VERIFY_CHOICES = (False, True, "fix")
# What the decorated function may return (a dict with any of these keys) to adjust one run.
OVERRIDABLE_OPTIONS = frozenset({"tables", "additional_tables", "deletes", "table_deletes", "include_columns",
                                 "hash_columns", "lookback_seconds", "parallel_tables"})


def absent_default_tables(tables: Iterable[str]) -> str:
    """Why a task whose every table is a default one this Airflow database lacks is skipped, not failed."""
    return (f"{', '.join(tables)}: not in this Airflow database, so this task has nothing to sync and is skipped. "
            "Airflow's default tables differ by version and auth manager (task_fail is gone in Airflow 3, the ab_* "
            "tables exist only with the FAB auth manager); a task mapped over tables_to_fan_out() gets one of these "
            "where they are absent. To map only over tables this database has, give tables_to_fan_out(tables=[...]).")


def table_names(value: Iterable[str] | None, option: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{option} must be a list of table names, e.g. ['dag_run', 'task_instance'].")
    return tuple(value)


def planned_tables(tables: Iterable[str] | None = None, additional_tables: Iterable[str] | None = None) \
        -> list[str] | None:
    """The tables a configuration names, without asking the database; None for ``tables=[]`` (every table)."""
    chosen = DEFAULT_TABLES if tables is None else tuple(tables)
    if tables is not None and not chosen:
        return None
    return list(dict.fromkeys((*chosen, *(additional_tables or ()))))


def table_outlets(destination_schema: str | None, tables: Iterable[str] | None = None,
                  additional_tables: Iterable[str] | None = None) -> list[Any]:
    """Every table a task may sync is an asset; a run publishes only the tables it synced."""
    schema = destination_schema or default_destination_schema()
    return [OutletAsset(table_asset_uri(schema, table)) for table in planned_tables(tables, additional_tables) or ()]


class AirflowDbSyncOperator(BaseOperator):
    """Mirror the Airflow metadata database into the warehouse behind ``connection_id`` (one cycle per run).

    :param db_type: ``snowflake``, ``redshift``, ``postgres``/``postgresql`` or ``duckdb``.
    :param connection_id: the Airflow connection of the warehouse.
    :param tables: replaces the default tables; ``[]`` syncs every table of the metadata database.
    :param additional_tables: added to the default tables (or to ``tables``).
    :param destination_schema: default ``airflow-{environment slug}`` (see :mod:`cdc_sync.airflow.naming`).
    :param source_connection_id: connection to the metadata database (default ``airflow_db``).
    :param source_url: the metadata database URL, instead of a connection.
    :param source_schema: the schema holding Airflow's tables when it is not the connection's default (PostgreSQL:
        instead of ``search_path``; MySQL/MariaDB: the database), as ``?schema=`` in the source URL.
    :param deletes / table_deletes / include_columns / hash_columns / lookback_seconds / parallel_tables: as in
        :func:`cdc_sync.sync`. Hashed columns get HMAC-SHA-256 under the warehouse connection's extra ``hash_key``
        (else ``CDC_SYNC_HASH_KEY``); with neither, plain SHA-256, which anyone can recompute for a guessed value.
    :param capture: ``"auto"`` (default), ``"log"`` or ``"query"``, as in :func:`cdc_sync.sync`: ``"log"`` reads
        PostgreSQL's write-ahead log and fails early, naming the fix, when the source cannot.
    :param history: keep every version of each row in ``<table>__history``, as in :func:`cdc_sync.sync`.
    :param lock_wait_seconds: how long to wait for a table that another cycle is syncing (an overlapping run);
        the run's other tables are synced meanwhile. A table still held then is left to that cycle (status
        ``locked``, no asset event); the task fails only when every table it syncs stayed held. On DuckDB, which
        takes one writing process per file, how long to wait for another task's cycle to end.
    :param verify: after the cycle, prove the mirror exact (:func:`cdc_sync.verify`): ``True`` fails the task when
        it is not, ``"fix"`` repairs what differs and logs it. Meant for a weekly DAG: it reads every row.
    """

    template_fields = ("tables", "additional_tables", "destination_schema")
    ui_color = "#d9ecf2"

    def __init__(
        self,
        *,
        db_type: str,
        connection_id: str,
        tables: Iterable[str] | None = None,
        additional_tables: Iterable[str] | None = None,
        destination_schema: str | None = None,
        source_connection_id: str = resolve.DEFAULT_SOURCE_CONNECTION_ID,
        source_url: str | None = None,
        source_schema: str | None = None,
        deletes: str = "soft",
        table_deletes: Mapping[str, str] | None = None,
        include_columns: Iterable[str] | None = None,
        hash_columns: Iterable[str] | None = None,
        lookback_seconds: float = 5.0,
        parallel_tables: int = 2,
        capture: str = "auto",
        history: bool = False,
        lock_wait_seconds: float = 300.0,
        verify: bool | str = False,
        **kwargs: Any,
    ) -> None:
        engine_for_db_type(db_type)
        if verify not in VERIFY_CHOICES:
            raise ConfigError(f"verify={verify!r} is not a verify option: use False, True (report and fail when the "
                              "mirror is not exact) or 'fix' (repair it).")
        self.verify = verify
        if not connection_id or not isinstance(connection_id, str):
            raise ConfigError("connection_id must name the Airflow connection of the warehouse, e.g. 'main'.")
        if capture not in CAPTURE_MODES:
            raise ConfigError(f"capture={capture!r} is not a capture mode: use one of {', '.join(CAPTURE_MODES)}.")
        if not isinstance(history, bool):
            raise ConfigError(f"history={history!r} must be True (keep every version in <table>__history) or False.")
        if deletes not in DELETE_MODES:
            raise ConfigError(f"deletes={deletes!r} is not a delete mode: use one of {', '.join(DELETE_MODES)}.")
        self.db_type = db_type
        self.connection_id = connection_id
        self.tables = table_names(tables, "tables")
        self.additional_tables = table_names(additional_tables, "additional_tables") or ()
        self.destination_schema = destination_schema or default_destination_schema()
        self.source_connection_id = source_connection_id
        self.source_url = source_url
        if source_schema is not None and (not isinstance(source_schema, str) or not source_schema):
            raise ConfigError(f"source_schema={source_schema!r} must name the schema that holds Airflow's tables, "
                              "e.g. 'airflow'.")
        self.source_schema = source_schema
        self.sync_options: dict[str, Any] = {
            "deletes": deletes, "table_deletes": dict(table_deletes or {}),
            "include_columns": list(include_columns or ()), "hash_columns": list(hash_columns or ()),
            "lookback_seconds": lookback_seconds, "parallel_tables": parallel_tables, "capture": capture,
            "history": history,
        }
        self.lock_wait_seconds = lock_wait_seconds
        if "outlets" not in kwargs:
            kwargs["outlets"] = table_outlets(self.destination_schema, self.tables, self.additional_tables)
        super().__init__(**kwargs)

    def execute(self, context: Any) -> dict[str, Any]:
        return self.run_cycle(None)

    def run_cycle(self, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """One cycle; a bad request fails the task without retries, a failed table fails it after the others
        were synced (so Airflow retries and alerts). Returns the cycle summary (the XCom)."""
        try:
            report = self._sync(self._request(overrides))
        except UnknownTableError as error:
            if set(error.missing) == set(error.requested) and set(error.missing) <= set(DEFAULT_TABLES):
                raise AirflowSkipException(absent_default_tables(error.missing)) from None
            raise AirflowFailException(f"{type(error).__name__}: {error}") from None
        except ConfigError as error:
            raise AirflowFailException(f"{type(error).__name__}: {error}") from None
        # The core logs each table's strategy, rows and timing as it commits; this closes the cycle.
        summary = report.summary()
        self.log.info("Cycle %s: %d table(s) synced into %r in %ss", report.cycle_id, len(report.tables),
                      report.schema, summary["seconds"])
        self._publish_synced(report)
        if self.verify:
            summary["verify"] = self._verify(self._request(overrides))
        return summary

    def _verify(self, request: dict[str, Any]) -> dict[str, Any]:
        """Compare the mirror with the source after the cycle; fail the task if it is not exact (unless fixed)."""
        source_url = resolve.source(self.source_url, self.source_connection_id)
        destination_url, options = resolve.destination(self.db_type, self.connection_id)
        report = verify(source_url, destination_url, self.destination_schema, destination_options=options,
                        fix=self.verify == "fix", **request)
        for table in report.tables:
            if not table.exact:
                self.log.warning("%s: %d missing, %d extra, %d differing row(s)%s", table.table, table.missing,
                                 table.extra, table.differing, ", repaired" if table.repaired else "")
        if not report.exact:
            raise AirflowFailException(
                f"The mirror in schema {report.schema!r} is not exact: "
                + "; ".join(f"{t.table}: {t.missing} missing, {t.extra} extra, {t.differing} differing"
                            for t in report.tables if not t.exact)
                + ". Run with verify='fix' (or cdc-sync verify --fix) to repair it."
            )
        return report.summary()

    def _request(self, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        if overrides is not None and not isinstance(overrides, Mapping):
            raise ConfigError(
                f"The decorated function returned {type(overrides).__name__}: return None or a dict with any of "
                f"{', '.join(sorted(OVERRIDABLE_OPTIONS))}."
            )
        unknown = set(overrides or {}) - OVERRIDABLE_OPTIONS
        if unknown:
            raise ConfigError(
                f"The decorated function returned unknown option(s) {', '.join(sorted(unknown))}: use any of "
                f"{', '.join(sorted(OVERRIDABLE_OPTIONS))}."
            )
        engine_for_db_type(self.db_type)  # templated or mapped values are checked again at run time
        request = {"tables": self.tables, "additional_tables": self.additional_tables, **self.sync_options,
                   **dict(overrides or {})}
        request["tables"] = table_names(request["tables"], "tables")
        request["additional_tables"] = table_names(request["additional_tables"], "additional_tables")
        return request

    def _sync(self, request: dict[str, Any]) -> CycleReport:
        source_url = with_source_schema(resolve.source(self.source_url, self.source_connection_id),
                                        self.source_schema)
        destination_url, options = resolve.destination(self.db_type, self.connection_id)
        key = resolve.hash_key(self.connection_id)  # None: CDC_SYNC_HASH_KEY, else plain SHA-256
        self.log.info("Syncing %s into %s schema %r (%s)", redact(source_url), self.db_type,
                      self.destination_schema, redact(destination_url))
        return sync(source_url, destination_url, self.destination_schema, destination_options=options,
                    hash_key=key, lock_wait_seconds=self.lock_wait_seconds, progress=ProgressLines(self._log_line),
                    **request)

    def _log_line(self, line: str) -> None:
        """A progress line into the task log, as it is (its % signs are no format)."""
        self.log.info("%s", line)

    def _publish_synced(self, report: CycleReport) -> None:
        """Keep as outlets only the tables this run synced, so their asset events mean fresh data."""
        synced = {table_asset_uri(report.schema, table.table) for table in report.tables if table.status == "ok"}
        self.outlets = [asset for asset in self.outlets
                        if not isinstance(asset, OutletAsset) or asset.uri in synced]
