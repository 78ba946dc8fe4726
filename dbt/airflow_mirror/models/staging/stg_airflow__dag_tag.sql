{{ airflow_mirror.select_mirrored('dag_tag', [
    ('dag_id', ['dag_id'], 'string'),
    ('tag_name', ['name'], 'string'),
]) }}
