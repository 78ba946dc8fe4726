{{ airflow_mirror.select_mirrored('import_error', [
    ('import_error_id', ['id'], 'int'),
    ('filename', ['filename'], 'string'),
    ('bundle_name', ['bundle_name'], 'string'),
    ('occurred_at', ['timestamp'], 'timestamp'),
    ('stacktrace', ['stacktrace'], 'string'),
]) }}
