{#- Every version of each task_instance row, from a cdc_sync history table (task_instance__history) when the mirror
    has one: each version is valid from _cdc_valid_from until _cdc_valid_to (NULL: still current). Empty
    otherwise. -#}
{{ airflow_mirror.select_mirrored('task_instance__history', [
    ('dag_id', ['dag_id'], 'string'),
    ('task_id', ['task_id'], 'string'),
    ('run_id', ['run_id'], 'string'),
    ('map_index', ['map_index'], 'int'),
    ('try_number', ['try_number'], 'int'),
    ('state', ['state'], 'string'),
    ('change_op', ['_cdc_op'], 'string'),
    ('change_lsn', ['_cdc_lsn'], 'string'),
    ('committed_at', ['_cdc_commit_ts'], 'timestamp'),
    ('valid_from', ['_cdc_valid_from'], 'timestamp'),
    ('valid_to', ['_cdc_valid_to'], 'timestamp'),
]) }}
