{#- One row per DAG. Airflow 3 replaced is_active with is_stale. -#}
{{ airflow_mirror.select_mirrored('dag', [
    ('dag_id', ['dag_id'], 'string'),
    ('is_paused', ['is_paused'], 'bool'),
    ('is_stale', ['is_stale'], 'bool'),
    ('is_active', ['is_active'], 'bool'),
    ('fileloc', ['fileloc'], 'string'),
    ('owners', ['owners'], 'string'),
    ('description', ['description'], 'string'),
    ('timetable_description', ['timetable_description'], 'string'),
    ('max_active_tasks', ['max_active_tasks'], 'int'),
    ('max_active_runs', ['max_active_runs'], 'int'),
    ('last_parsed_time', ['last_parsed_time'], 'timestamp'),
    ('bundle_name', ['bundle_name'], 'string'),
]) }}
