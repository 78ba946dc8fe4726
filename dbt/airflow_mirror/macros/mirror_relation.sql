{#- How the package reads the mirror: a staging model asks for a mirrored table and the columns it needs; tables
    or columns this Airflow version (or this mirror's table list) lacks become typed NULLs, so every staging model
    has the same columns on Airflow 2.10, 2.11 and 3.x. -#}

{% macro mirror_relation(table) %}
  {#- The mirrored table as a relation, or none when the mirror does not hold it (task_fail on 3.x,
      task_instance_history when not synced). Snowflake's upper-case unquoted names match here too, because the
      sources quote schemas only. -#}
  {%- if not execute -%}{{ return(none) }}{%- endif -%}
  {%- if not var('airflow_mirror_introspect', true) -%}{{ return(source('airflow_mirror', table)) }}{%- endif -%}
  {{ return(load_relation(source('airflow_mirror', table))) }}
{% endmacro %}


{% macro mirror_columns(relation) %}
  {#- Lower-cased column name -> data type of a mirrored table; empty when the table is missing. -#}
  {%- set found = {} -%}
  {%- if relation is not none -%}
    {%- for column in adapter.get_columns_in_relation(relation) -%}
      {%- do found.update({column.name | lower: column.data_type | lower}) -%}
    {%- endfor -%}
  {%- endif -%}
  {{ return(found) }}
{% endmacro %}


{% macro typed_null(kind) %}
  {%- if kind == 'timestamp' -%} cast(null as {{ airflow_mirror.type_timestamp_tz() }})
  {%- elif kind == 'int' -%} cast(null as {{ dbt.type_bigint() }})
  {%- elif kind == 'float' -%} cast(null as {{ dbt.type_float() }})
  {%- elif kind == 'bool' -%} cast(null as {{ dbt.type_boolean() }})
  {%- else -%} cast(null as {{ dbt.type_string() }})
  {%- endif -%}
{% endmacro %}


{% macro mirrored_value(name, data_type, kind) %}
  {#- One mirrored column as the package's type. Timestamps stay as mirrored (with time zone, UTC). A JSON column
      becomes its text; a bytes column (Airflow 2's pickled dag_run.conf) cannot be read in SQL and becomes NULL. -#}
  {%- set column = 'src.' ~ name -%}
  {%- if kind == 'timestamp' -%} {{ column }}
  {%- elif kind == 'int' -%} cast({{ column }} as {{ dbt.type_bigint() }})
  {%- elif kind == 'float' -%} cast({{ column }} as {{ dbt.type_float() }})
  {%- elif kind == 'bool' -%} cast({{ column }} as {{ dbt.type_boolean() }})
  {%- elif kind == 'json' and ('blob' in data_type or 'bytea' in data_type or 'binary' in data_type
                               or 'varbyte' in data_type) -%} {{ airflow_mirror.typed_null('string') }}
  {%- elif kind == 'json' and ('json' in data_type or 'variant' in data_type or 'super' in data_type
                               or 'object' in data_type) -%} {{ airflow_mirror.json_to_text(column) }}
  {%- else -%} cast({{ column }} as {{ dbt.type_string() }})
  {%- endif -%}
{% endmacro %}


{% macro select_mirrored(table, columns) %}
  {#- ``columns``: (output name, [candidate source columns], kind) with kind one of string, int, float, bool,
      timestamp, json. The candidates present are coalesced in order (a mirror upgraded from Airflow 2 keeps
      execution_date next to logical_date), and none present gives a typed NULL. Adds the mirror's bookkeeping: cdc_synced_at, cdc_deleted_at and
      is_deleted (soft-deleted rows are kept, so history purged by ``airflow db clean`` stays queryable). -#}
  {%- set relation = airflow_mirror.mirror_relation(table) -%}
  {%- if var('airflow_mirror_introspect', true) -%}
    {%- set present = airflow_mirror.mirror_columns(relation) -%}
  {%- else -%}
    {#- Compiling without a warehouse (airflow_mirror_introspect: false): assume every table and the first
        candidate of each column exist, JSON columns as JSON. -#}
    {%- set present = {'_cdc_synced_at': 'timestamp', '_cdc_deleted_at': 'timestamp'} -%}
    {%- for output, candidates, kind in columns -%}{%- do present.update({candidates[0]: kind}) -%}{%- endfor -%}
  {%- endif -%}
  select
  {%- for output, candidates, kind in columns %}
    {% set chosen = [] -%}
    {%- for candidate in candidates if candidate in present -%}{%- do chosen.append(candidate) -%}{%- endfor -%}
    {%- if chosen | length > 1 -%}
      coalesce({% for name in chosen %}{{ airflow_mirror.mirrored_value(name, present[name], kind) }}{{ ', ' if not loop.last }}{% endfor %})
    {%- elif chosen -%} {{ airflow_mirror.mirrored_value(chosen[0], present[chosen[0]], kind) }}
    {%- else -%} {{ airflow_mirror.typed_null(kind) }}
    {%- endif %} as {{ output }},
  {%- endfor %}
    {% if '_cdc_synced_at' in present %}src._cdc_synced_at{% else %}{{ airflow_mirror.typed_null('timestamp') }}{% endif %} as cdc_synced_at,
    {% if '_cdc_deleted_at' in present %}src._cdc_deleted_at{% else %}{{ airflow_mirror.typed_null('timestamp') }}{% endif %} as cdc_deleted_at,
    {% if '_cdc_deleted_at' in present %}src._cdc_deleted_at is not null{% else %}1 = 0{% endif %} as is_deleted
  {{ airflow_mirror.from_mirror(relation) }}
{% endmacro %}


{% macro from_mirror(relation) %}
  {#- FROM the mirrored table, or from no rows at all when the mirror lacks it. -#}
  {%- if relation is not none -%} from {{ relation }} as src
  {%- else -%} from (select 1 as no_table) as src where 1 = 0
  {%- endif -%}
{% endmacro %}
