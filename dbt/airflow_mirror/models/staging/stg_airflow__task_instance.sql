{#- The latest try of each task instance. Its identity is (dag_id, task_id, run_id, map_index) on every version:
    Airflow 3's UUID id (task_instance_uuid) changes on every retry or clear. try_number is the try this row
    describes (Airflow 2.10+ and 3.x count it when the try is scheduled); 0 means no try yet. -#}
{{ airflow_mirror.select_mirrored('task_instance', [
    ('dag_id', ['dag_id'], 'string'),
    ('task_id', ['task_id'], 'string'),
    ('run_id', ['run_id'], 'string'),
    ('map_index', ['map_index'], 'int'),
    ('task_instance_uuid', ['id'], 'string'),
    ('try_number', ['try_number'], 'int'),
    ('max_tries', ['max_tries'], 'int'),
    ('state', ['state'], 'string'),
    ('queued_at', ['queued_dttm'], 'timestamp'),
    ('scheduled_at', ['scheduled_dttm'], 'timestamp'),
    ('start_date', ['start_date'], 'timestamp'),
    ('end_date', ['end_date'], 'timestamp'),
    ('duration_seconds', ['duration'], 'float'),
    ('operator', ['custom_operator_name', 'operator'], 'string'),
    ('pool', ['pool'], 'string'),
    ('pool_slots', ['pool_slots'], 'int'),
    ('queue', ['queue'], 'string'),
    ('executor', ['executor'], 'string'),
    ('hostname', ['hostname'], 'string'),
    ('priority_weight', ['priority_weight'], 'int'),
    ('updated_at', ['updated_at'], 'timestamp'),
]) }}
