{#- One row per try of a task instance. The latest try comes from task_instance; earlier tries from
    task_instance_history (Airflow 2.10+ and 3.x, when mirrored) or, on Airflow 2.x, from task_fail, whose rows
    carry no try number: the k-th failure of a task instance is taken as its try k (Airflow 2 retries a try only
    after it failed; a success before a failure happens only across a clear). A task_fail row already known from
    the other tables (same key, and the same start or end) is left out. A task instance that has not started a try
    (cleared, scheduled, skipped before running) has no row of its own. -#}
with current_try as (
    select *, 1 as recorded_rank, 'task_instance' as recorded_in
    from {{ ref('stg_airflow__task_instance') }}
    where try_number >= 1 and state is not null and coalesce(start_date, queued_at, end_date) is not null
),

archived_try as (
    select *, 2 as recorded_rank, 'task_instance_history' as recorded_in
    from {{ ref('stg_airflow__task_instance_history') }}
),

known_try as (
    select * from current_try
    union all
    select * from archived_try
),

numbered_failure as (
    select
        f.*,
        row_number() over (
            partition by f.dag_id, f.task_id, f.run_id, f.map_index
            order by coalesce(f.start_date, f.end_date), f.task_fail_id
        ) as try_number
    from {{ ref('stg_airflow__task_fail') }} as f
),

failed_try as (
    select
        f.dag_id, f.task_id, f.run_id, f.map_index,
        ti.task_instance_uuid,
        f.try_number,
        ti.max_tries, 'failed' as state, cast(null as {{ airflow_mirror.type_timestamp_tz() }}) as queued_at,
        f.start_date, f.end_date, f.duration_seconds, ti.operator, ti.pool, ti.queue, ti.executor, ti.hostname,
        f.cdc_deleted_at, f.is_deleted, 3 as recorded_rank, 'task_fail' as recorded_in
    from numbered_failure as f
    left join {{ ref('stg_airflow__task_instance') }} as ti
        on ti.dag_id = f.dag_id and ti.task_id = f.task_id and ti.run_id = f.run_id and ti.map_index = f.map_index
    where not exists (
        select 1 from known_try as k
        where k.dag_id = f.dag_id and k.task_id = f.task_id and k.run_id = f.run_id and k.map_index = f.map_index
          and (k.start_date = f.start_date or k.end_date = f.end_date)
    )
),

every_try as (
    select
        dag_id, task_id, run_id, map_index, task_instance_uuid, try_number, max_tries, state, queued_at,
        start_date, end_date, duration_seconds, operator, pool, queue, executor, hostname, cdc_deleted_at,
        is_deleted, recorded_rank, recorded_in
    from known_try
    union all
    select
        dag_id, task_id, run_id, map_index, task_instance_uuid, try_number, max_tries, state, queued_at,
        start_date, end_date, duration_seconds, operator, pool, queue, executor, hostname, cdc_deleted_at,
        is_deleted, recorded_rank, recorded_in
    from failed_try
),

ranked as (
    select
        every_try.*,
        row_number() over (
            partition by dag_id, task_id, run_id, map_index, try_number order by recorded_rank
        ) as rank_in_try,
        max(try_number) over (partition by dag_id, task_id, run_id, map_index) as last_try_number
    from every_try
)

select
    dag_id,
    task_id,
    run_id,
    map_index,
    try_number,
    task_instance_uuid,
    state,
    {{ airflow_mirror.outcome('state') }} as outcome,
    queued_at,
    start_date,
    end_date,
    {{ airflow_mirror.seconds_between('queued_at', 'start_date') }} as queue_wait_seconds,
    {{ airflow_mirror.seconds_between('start_date', 'end_date') }} as run_seconds,
    operator,
    pool,
    queue,
    executor,
    hostname,
    try_number = last_try_number as is_last_try,
    recorded_in,
    is_deleted,
    cdc_deleted_at
from ranked
where rank_in_try = 1
