{#- FAB users (Airflow 2, and 3 with the FAB auth manager). Names and e-mail are left out: join on user_id. -#}
{{ airflow_mirror.select_mirrored('ab_user', [
    ('user_id', ['id'], 'int'),
    ('username', ['username'], 'string'),
    ('active', ['active'], 'bool'),
    ('last_login', ['last_login'], 'timestamp'),
    ('login_count', ['login_count'], 'int'),
    ('fail_login_count', ['fail_login_count'], 'int'),
]) }}
