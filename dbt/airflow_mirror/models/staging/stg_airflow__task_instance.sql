{#- The latest try of each task instance. Its identity is (dag_id, task_id, run_id, map_index) on every version:
    Airflow 3's UUID id (task_instance_uuid) changes on every retry or clear. try_number is the try this row
    describes (Airflow 2.10+ and 3.x count it when the try is scheduled); 0 means no try yet. -#}
{{ airflow_mirror.select_mirrored('task_instance', airflow_mirror.task_instance_columns('id')) }}
