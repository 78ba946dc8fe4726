{#- cdc_sync's own state, one row per mirrored table. -#}
{{ airflow_mirror.select_mirrored('_cdc_watermarks', [
    ('table_name', ['table_name'], 'string'),
    ('strategy', ['strategy'], 'string'),
    ('delete_mode', ['delete_mode'], 'string'),
    ('last_attempt_at', ['last_attempt_at'], 'timestamp'),
    ('last_success_at', ['last_success_at'], 'timestamp'),
    ('lag_seconds', ['lag_seconds'], 'float'),
    ('live_rows', ['live_rows'], 'int'),
    ('last_rows_read', ['last_rows_read'], 'int'),
    ('last_error', ['last_error'], 'string'),
]) }}
