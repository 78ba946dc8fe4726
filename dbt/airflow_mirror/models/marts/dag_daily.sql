{#- Per DAG and day (the day a run started, in the warehouse session's time zone; UTC by default): runs, how many
    succeeded and failed, the failure rate among finished runs, and the median and 95th percentile of their
    durations. -#}
with started as (
    select
        dag_id,
        cast({{ dbt.date_trunc('day', 'start_date') }} as date) as run_date,
        outcome,
        duration_seconds
    from {{ ref('dag_runs') }}
    where start_date is not null
),

finished as (
    select * from started where outcome in ('success', 'failed')
),

counts as (
    select
        dag_id,
        run_date,
        count(*) as runs,
        sum(case when outcome = 'success' then 1 else 0 end) as successes,
        sum(case when outcome = 'failed' then 1 else 0 end) as failures
    from started
    group by dag_id, run_date
),

durations as (
    select
        dag_id,
        run_date,
        {{ airflow_mirror.percentile('duration_seconds', 0.5) }} as p50_duration_seconds,
        {{ airflow_mirror.percentile('duration_seconds', 0.95) }} as p95_duration_seconds
    from finished
    where duration_seconds is not null
    group by dag_id, run_date
)

select
    c.dag_id,
    c.run_date,
    c.runs,
    c.successes,
    c.failures,
    case when c.successes + c.failures > 0 then c.failures * 1.0 / (c.successes + c.failures) end as failure_rate,
    d.p50_duration_seconds,
    d.p95_duration_seconds
from counts as c
left join durations as d on d.dag_id = c.dag_id and d.run_date = c.run_date
