{#- Time each task instance spent in each state, from the versions in a cdc_sync history table
    (task_instance__history). The model is always built; it is empty while the mirror has no history table. -#}
select
    dag_id,
    task_id,
    run_id,
    map_index,
    try_number,
    state,
    valid_from as entered_at,
    valid_to as left_at,
    {{ airflow_mirror.seconds_between('valid_from', 'coalesce(valid_to, ' ~ dbt.current_timestamp() ~ ')') }}
        as seconds_in_state,
    valid_to is null as is_current
from {{ ref('stg_airflow__task_instance_versions') }}
where change_op is null or lower(change_op) not in ('d', 'delete')
