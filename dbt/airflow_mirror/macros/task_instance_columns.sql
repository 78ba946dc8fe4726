{% macro task_instance_columns(uuid_column) %}
  {#- The columns of a task instance try, alike in task_instance and task_instance_history; only the column holding
      Airflow 3's per-try UUID differs (id in task_instance, task_instance_id in the history). -#}
  {{ return([
      ('dag_id', ['dag_id'], 'string'),
      ('task_id', ['task_id'], 'string'),
      ('run_id', ['run_id'], 'string'),
      ('map_index', ['map_index'], 'int'),
      ('task_instance_uuid', [uuid_column], 'string'),
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
      ('updated_at', ['updated_at'], 'timestamp')
  ]) }}
{% endmacro %}
