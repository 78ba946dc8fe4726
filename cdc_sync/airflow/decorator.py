"""``@task.datacoves_airflow_db_sync`` (alias ``@task.airflow_db_sync``): mirror the metadata database in a task.

::

    from airflow.sdk import dag, task          # Airflow 2: from airflow.decorators import dag, task

    @task.datacoves_airflow_db_sync(db_type="snowflake", connection_id="main", destination_schema="airflow_dev")
    def sync_airflow_db():
        pass

The decorated function is called once per run, with the usual TaskFlow arguments (context keys, mapped values),
before the cycle. It may return ``None`` (sync as configured) or a dict overriding, for this run only, any of
``tables``, ``additional_tables``, ``deletes``, ``table_deletes``, ``include_columns``, ``hash_columns``,
``lookback_seconds``, ``parallel_tables`` — e.g. ``return {"tables": params["tables"]}`` for a manually
triggered partial sync. Anything else fails the task without retries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cdc_sync.airflow.compat import DecoratedOperator, determine_kwargs, task_decorator_factory
from cdc_sync.airflow.operator import AirflowDbSyncOperator, planned_tables, table_names, table_outlets
from cdc_sync.errors import ConfigError


class _AirflowDbSyncDecoratedOperator(DecoratedOperator, AirflowDbSyncOperator):
    """Calls the decorated function for per-run overrides, then runs one cycle."""

    custom_operator_name = "@task.datacoves_airflow_db_sync"
    template_fields = (*DecoratedOperator.template_fields, *AirflowDbSyncOperator.template_fields)

    def __init__(self, *, python_callable: Callable[..., Any], op_args: Any = None, op_kwargs: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(python_callable=python_callable, op_args=op_args, op_kwargs=op_kwargs, **kwargs)

    def execute(self, context: Any) -> dict[str, Any]:
        arguments = determine_kwargs(self.python_callable, self.op_args, {**context, **self.op_kwargs})
        return self.run_cycle(self.python_callable(*self.op_args, **arguments))


def airflow_db_sync_task(python_callable: Callable[..., Any] | None = None, multiple_outputs: bool | None = None,
                         **kwargs: Any) -> Any:
    """The task decorator registered as ``datacoves_airflow_db_sync`` and ``airflow_db_sync``; the keyword
    arguments are those of :class:`~cdc_sync.airflow.operator.AirflowDbSyncOperator` plus any ordinary task
    argument (``task_id``, ``retries``, ``pool``, …)."""
    if "outlets" not in kwargs:
        # Given here, not only by the operator: a task mapped with .expand() is known to Airflow by the arguments
        # of the decorator alone, and its assets must be known before any mapped instance exists.
        kwargs["outlets"] = table_outlets(kwargs.get("destination_schema"), table_names(kwargs.get("tables"), "tables"),
                                          table_names(kwargs.get("additional_tables"), "additional_tables"))
    return task_decorator_factory(python_callable=python_callable, multiple_outputs=multiple_outputs,
                                  decorated_operator_class=_AirflowDbSyncDecoratedOperator, **kwargs)


def tables_to_fan_out(tables: Iterable[str] | None = None, additional_tables: Iterable[str] | None = None) \
        -> list[str]:
    """The table names to map over, one mapped task per table (Airflow dynamic task mapping)::

        from cdc_sync.airflow.decorator import tables_to_fan_out

        @task.datacoves_airflow_db_sync(db_type="snowflake", connection_id="main", additional_tables=["xcom"],
                                        lock_wait_seconds=3600)
        def sync_table(table: str):
            return {"tables": [table]}

        sync_table.expand(table=tables_to_fan_out(additional_tables=["xcom"]))

    Give the decorator the same ``tables`` / ``additional_tables`` as ``tables_to_fan_out``: they declare the
    task's asset outlets, one per table.

    Each mapped task is a cycle of one table: it commits that table and its watermark atomically, retries and
    alerts on its own, and publishes only its table's asset. Each cycle locks only its own tables (plus the schema
    for a moment at its start), so mapped tasks of one schema run at the same time on PostgreSQL, Snowflake and
    Redshift, as many as Airflow gives slots. A run that finds its table still being synced by an overlapping run
    waits for that table up to ``lock_wait_seconds``. DuckDB has one writer per file: there mapped tasks take
    turns (each waits, saying so in its log), so use one task with ``parallel_tables`` instead.
    Computed from the arguments alone, so parsing the DAG does no database work; ``tables=[]`` cannot be fanned
    out, since only the database knows every table. The default tables include some an Airflow database may lack
    (``task_fail`` on Airflow 3, ``ab_*`` without the FAB auth manager): their mapped tasks are skipped when they
    run, saying why, and fail no DAG run.
    """
    names = planned_tables(tables, additional_tables)
    if names is None:
        raise ConfigError("tables=[] (every table) cannot be fanned out at parse time: list the tables to map over.")
    return names
