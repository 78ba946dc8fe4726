{#- cdc_sync's run log, one row per table per cycle. -#}
{{ airflow_mirror.select_mirrored('_cdc_runs', [
    ('cycle_id', ['cycle_id'], 'string'),
    ('table_name', ['table_name'], 'string'),
    ('started_at', ['started_at'], 'timestamp'),
    ('finished_at', ['finished_at'], 'timestamp'),
    ('status', ['status'], 'string'),
    ('rows_read', ['rows_read'], 'int'),
    ('rows_written', ['rows_written'], 'int'),
    ('seconds', ['seconds'], 'float'),
    ('error', ['error'], 'string'),
]) }}
