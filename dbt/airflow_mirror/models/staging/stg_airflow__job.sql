{{ airflow_mirror.select_mirrored('job', [
    ('job_id', ['id'], 'int'),
    ('dag_id', ['dag_id'], 'string'),
    ('job_type', ['job_type'], 'string'),
    ('state', ['state'], 'string'),
    ('start_date', ['start_date'], 'timestamp'),
    ('end_date', ['end_date'], 'timestamp'),
    ('latest_heartbeat', ['latest_heartbeat'], 'timestamp'),
    ('executor_class', ['executor_class'], 'string'),
    ('hostname', ['hostname'], 'string'),
]) }}
