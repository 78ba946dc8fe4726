{{ airflow_mirror.select_mirrored('ab_permission', [
    ('permission_id', ['id'], 'int'),
    ('permission_name', ['name'], 'string'),
]) }}
