{#- One row per DAG run. Airflow 3 renamed execution_date to logical_date; dag_run.conf is JSON in 3.x and pickled
    bytes in 2.x (conf_json is NULL there; after an upgrade the 2.x bytes are kept under conf_airflow2). -#}
{{ airflow_mirror.select_mirrored('dag_run', [
    ('dag_id', ['dag_id'], 'string'),
    ('run_id', ['run_id'], 'string'),
    ('logical_date', ['logical_date', 'execution_date'], 'timestamp'),
    ('run_after', ['run_after', 'logical_date', 'execution_date'], 'timestamp'),
    ('run_type', ['run_type'], 'string'),
    ('state', ['state'], 'string'),
    ('queued_at', ['queued_at'], 'timestamp'),
    ('start_date', ['start_date'], 'timestamp'),
    ('end_date', ['end_date'], 'timestamp'),
    ('data_interval_start', ['data_interval_start'], 'timestamp'),
    ('data_interval_end', ['data_interval_end'], 'timestamp'),
    ('clear_number', ['clear_number'], 'int'),
    ('triggered_by', ['triggered_by'], 'string'),
    ('conf_json', ['conf'], 'json'),
    ('updated_at', ['updated_at'], 'timestamp'),
]) }}
