"""The decorated task when one table fails: the other tables are committed in that run, then the task fails with
an ordinary (retryable) error naming the failed table, and no connection password reaches the logs."""

from __future__ import annotations

import logging
import uuid

import psycopg
import pytest

DESTINATION_SECRET = "Dst-S3cret-0cc175b9"
SOURCE_SECRET = "Src-S3cret-92eb5ffe"
SCHEMA = "mirror"


def _with_password(url: str, secret: str) -> str:
    assert "postgres@" in url
    return url.replace("postgres@", f"postgres:{secret}@")


def _decorated_task():
    """A DAG written as users write it; the task object the worker would run."""
    from airflow.sdk import dag, task

    @dag(dag_id=f"d_{uuid.uuid4().hex[:8]}", schedule=None)
    def the_dag():
        @task.datacoves_airflow_db_sync(db_type="postgres", connection_id="main", destination_schema=SCHEMA,
                                        retries=2)
        def sync_airflow_db():
            pass

        sync_airflow_db()

    return the_dag().get_task("sync_airflow_db")


def _runs(warehouse_url: str) -> list[tuple[str, str, str, str | None]]:
    with psycopg.connect(warehouse_url) as warehouse:
        return warehouse.execute(
            f'SELECT cycle_id, table_name, status, error FROM "{SCHEMA}"."_cdc_runs" ORDER BY started_at').fetchall()


def test_one_failed_table_fails_the_task_after_the_others_were_synced(
        monkeypatch, caplog, capfd, airflow3_source, postgres_destination):
    from airflow.sdk.exceptions import AirflowFailException

    from cdc_sync import TableSyncError

    monkeypatch.setenv("AIRFLOW_CONN_MAIN", _with_password(postgres_destination, DESTINATION_SECRET))
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_DB", _with_password(airflow3_source, SOURCE_SECRET))
    caplog.set_level(logging.DEBUG)

    first = _decorated_task().execute({})
    assert first["ok"] and {"job", "dag_run", "task_instance"} <= set(first["tables"])
    first_cycles = {cycle for cycle, *_ in _runs(postgres_destination)}

    with psycopg.connect(airflow3_source, autocommit=True) as source:
        # A type the mirror cannot follow without a resync: only `job` must stop.
        source.execute("ALTER TABLE job ALTER COLUMN latest_heartbeat TYPE text")
        source.execute("UPDATE dag_run SET state = 'failed', updated_at = clock_timestamp() "
                       "WHERE run_id = 'scheduled__7'")
        source.execute("UPDATE task_instance SET state = 'up_for_retry', updated_at = clock_timestamp() "
                       "WHERE run_id = 'scheduled__7' AND task_id = 'task_2'")

    task = _decorated_task()
    with pytest.raises(TableSyncError) as failure:
        task.execute({})
    # An ordinary failure: the task runner retries it (retries=2) and alerts; AirflowFailException would not.
    assert not isinstance(failure.value, AirflowFailException)
    assert task.retries == 2
    assert set(failure.value.failed_tables) == {"job"}
    assert "job" in str(failure.value) and "latest_heartbeat" in str(failure.value)

    # The other tables were committed in that same run.
    second = [row for row in _runs(postgres_destination) if row[0] not in first_cycles]
    assert len({cycle for cycle, *_ in second}) == 1, second
    status = {table: (state, error) for _, table, state, error in second}
    assert status["job"][0] == "failed" and "latest_heartbeat" in status["job"][1]
    assert status["dag_run"] == ("ok", None) and status["task_instance"] == ("ok", None)
    assert all(state == "ok" for table, (state, _) in status.items() if table != "job")
    with psycopg.connect(postgres_destination) as warehouse:
        run_state = warehouse.execute(f'SELECT state FROM "{SCHEMA}"."dag_run" WHERE run_id = %s',
                                      ("scheduled__7",)).fetchall()
        task_state = warehouse.execute(f'SELECT state FROM "{SCHEMA}"."task_instance" WHERE run_id = %s '
                                       "AND task_id = %s", ("scheduled__7", "task_2")).fetchall()
    assert run_state == [("failed",)] and task_state == [("up_for_retry",)]

    # No password in anything the task logged or printed, nor in the error Airflow records.
    captured = capfd.readouterr()
    logs = "\n".join([caplog.text, captured.out, captured.err, str(failure.value)])
    assert "Syncing" in logs and "mirror" in logs, "the task's log lines were not captured"
    for secret in (DESTINATION_SECRET, SOURCE_SECRET):
        assert secret not in logs
