{#- Earlier tries of task instances (Airflow 2.10+ and 3.x archive a try here when it is retried or cleared).
    Empty when the mirror does not hold task_instance_history. -#}
{{ airflow_mirror.select_mirrored('task_instance_history', airflow_mirror.task_instance_columns('task_instance_id')) }}
