{#- Failed tries in Airflow 2.x (the table is gone in 3.x, where this model is empty). task_fail has no try
    number: task_runs derives it from the order of the failures. -#}
{{ airflow_mirror.select_mirrored('task_fail', [
    ('task_fail_id', ['id'], 'int'),
    ('dag_id', ['dag_id'], 'string'),
    ('task_id', ['task_id'], 'string'),
    ('run_id', ['run_id'], 'string'),
    ('map_index', ['map_index'], 'int'),
    ('start_date', ['start_date'], 'timestamp'),
    ('end_date', ['end_date'], 'timestamp'),
    ('duration_seconds', ['duration'], 'float'),
]) }}
