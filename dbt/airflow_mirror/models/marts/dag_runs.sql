{#- One row per DAG run: how long it took, how it ended, how late it started after its data interval closed, and
    how many task tries it took. Runs purged by `airflow db clean` stay, with is_deleted. -#}
with tries as (
    select
        dag_id, run_id,
        count(*) as tries,
        sum(case when outcome = 'failed' then 1 else 0 end) as failed_tries,
        count(distinct {{ dbt.concat(['task_id', "'|'", dbt.cast('map_index', dbt.type_string())]) }}) as task_instances_tried
    from {{ ref('task_runs') }}
    group by dag_id, run_id
)

select
    r.dag_id,
    r.run_id,
    r.logical_date,
    r.run_type,
    r.state,
    {{ airflow_mirror.outcome('r.state') }} as outcome,
    r.queued_at,
    r.start_date,
    r.end_date,
    {{ airflow_mirror.seconds_between('r.start_date', 'r.end_date') }} as duration_seconds,
    r.data_interval_start,
    r.data_interval_end,
    {{ airflow_mirror.seconds_between('r.data_interval_end', 'r.start_date') }} as start_delay_seconds,
    r.clear_number,
    coalesce(t.tries, 0) as tries,
    coalesce(t.failed_tries, 0) as failed_tries,
    coalesce(t.task_instances_tried, 0) as task_instances_tried,
    r.is_deleted,
    r.cdc_deleted_at
from {{ ref('stg_airflow__dag_run') }} as r
left join tries as t on t.dag_id = r.dag_id and t.run_id = r.run_id
