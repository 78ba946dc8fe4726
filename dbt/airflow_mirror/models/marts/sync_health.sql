{#- Per mirrored table: how far behind the mirror is, when it last synced, and the last error (from cdc_sync's
    _cdc_watermarks and the latest row of _cdc_runs). -#}
with latest_run as (
    select
        table_name, status, finished_at, error,
        row_number() over (partition by table_name order by started_at desc) as recency
    from {{ ref('stg_cdc__runs') }}
)

select
    w.table_name,
    w.strategy,
    w.delete_mode,
    w.last_attempt_at,
    w.last_success_at,
    w.lag_seconds,
    {{ airflow_mirror.seconds_between('w.last_success_at', dbt.current_timestamp()) }} as seconds_since_success,
    w.live_rows,
    w.last_error,
    w.last_error is not null as is_failing,
    r.status as last_run_status,
    r.finished_at as last_run_finished_at,
    r.error as last_run_error
from {{ ref('stg_cdc__watermarks') }} as w
left join latest_run as r on r.table_name = w.table_name and r.recency = 1
