{#- Failed tries that ended in the last `airflow_mirror_failure_days` days (null: all of them), with how many tries
    the task instance took and what its next try did ('none' when there was no next try yet). -#}
{%- set days = var('airflow_mirror_failure_days', 30) -%}
with tries as (
    select
        task_runs.*,
        lead(outcome) over (partition by dag_id, task_id, run_id, map_index order by try_number) as next_outcome,
        count(*) over (partition by dag_id, task_id, run_id, map_index) as tries_of_task_instance
    from {{ ref('task_runs') }}
)

select
    t.dag_id,
    t.task_id,
    t.run_id,
    t.map_index,
    t.try_number,
    t.start_date,
    t.end_date as failed_at,
    t.run_seconds,
    t.operator,
    t.hostname,
    t.tries_of_task_instance,
    coalesce(t.next_outcome, 'none') as next_outcome,
    ti.state as task_instance_state,
    t.is_deleted
from tries as t
left join {{ ref('stg_airflow__task_instance') }} as ti
    on ti.dag_id = t.dag_id and ti.task_id = t.task_id and ti.run_id = t.run_id and ti.map_index = t.map_index
where t.outcome = 'failed'
{%- if days is not none %}
  and coalesce(t.end_date, t.start_date) >= {{ dbt.dateadd('day', -1 * days, dbt.current_timestamp()) }}
{%- endif %}
