"""A DAG whose runs hold what the dbt package's marts measure: a retried task that then succeeds, a task that
fails every try, and mapped tasks, one of which fails once before it succeeds. Runs under Airflow 2.11 and 3.x."""

from __future__ import annotations

from datetime import datetime, timedelta

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2
    from airflow.decorators import dag, task


@dag(dag_id="analytics_probe", schedule="@daily", start_date=datetime(2026, 1, 1), catchup=False,
     default_args={"retries": 1, "retry_delay": timedelta(seconds=0)})
def analytics_probe():
    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    @task
    def double(number: int, ti=None) -> int:
        if number == 3 and ti.try_number == 1:
            raise ValueError("the third mapped task fails its first try")
        return number * 2

    @task
    def flaky(ti=None) -> None:
        if ti.try_number == 1:
            raise ValueError("fails its first try, then succeeds")

    @task
    def broken() -> None:
        raise RuntimeError("fails every try")

    double.expand(number=numbers())
    flaky()
    broken()


analytics_probe()
