{{ airflow_mirror.select_mirrored('ab_role', [
    ('role_id', ['id'], 'int'),
    ('role_name', ['name'], 'string'),
]) }}
