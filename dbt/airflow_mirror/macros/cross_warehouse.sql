{#- The few places where the warehouses differ and dbt's own cross-database macros have nothing to offer. Each is
    dispatched (adapter.dispatch), so a project can override one for its adapter. -#}

{% macro percentile(expression, fraction) %}
  {#- A continuous percentile (interpolated), as an aggregate. -#}
  {{ return(adapter.dispatch('percentile', 'airflow_mirror')(expression, fraction)) }}
{% endmacro %}

{% macro default__percentile(expression, fraction) -%}
  percentile_cont({{ fraction }}) within group (order by {{ expression }})
{%- endmacro %}

{% macro postgres__percentile(expression, fraction) -%}
  percentile_cont({{ fraction }}) within group (order by {{ expression }})
{%- endmacro %}

{% macro duckdb__percentile(expression, fraction) -%}
  quantile_cont({{ expression }}, {{ fraction }})
{%- endmacro %}

{% macro snowflake__percentile(expression, fraction) -%}
  percentile_cont({{ fraction }}) within group (order by {{ expression }})
{%- endmacro %}

{% macro redshift__percentile(expression, fraction) -%}
  {#- Redshift wants every sort-based aggregate of one query to order by the same expression, as dag_daily does. -#}
  percentile_cont({{ fraction }}) within group (order by {{ expression }})
{%- endmacro %}


{% macro json_to_text(expression) %}
  {#- A JSON value (JSON/JSONB, VARIANT, SUPER) as its JSON text. -#}
  {{ return(adapter.dispatch('json_to_text', 'airflow_mirror')(expression)) }}
{% endmacro %}

{% macro default__json_to_text(expression) -%}
  cast({{ expression }} as {{ dbt.type_string() }})
{%- endmacro %}

{% macro snowflake__json_to_text(expression) -%}
  to_json({{ expression }})
{%- endmacro %}

{% macro redshift__json_to_text(expression) -%}
  json_serialize({{ expression }})
{%- endmacro %}


{% macro type_timestamp_tz() %}
  {#- The mirror's timestamp type: an instant, with time zone. -#}
  {{ return(adapter.dispatch('type_timestamp_tz', 'airflow_mirror')()) }}
{% endmacro %}

{% macro default__type_timestamp_tz() -%} timestamp with time zone {%- endmacro %}
{% macro snowflake__type_timestamp_tz() -%} timestamp_tz {%- endmacro %}
{% macro redshift__type_timestamp_tz() -%} timestamptz {%- endmacro %}


{% macro seconds_between(start, finish) -%}
  {#- Elapsed seconds, to the millisecond, through dbt's cross-database datediff. -#}
  ({{ dbt.datediff(start, finish, 'millisecond') }} / 1000.0)
{%- endmacro %}


{% macro outcome(state) -%}
  {#- A try's outcome from Airflow's state: a try that will be retried failed too. -#}
  case
    when {{ state }} = 'success' then 'success'
    when {{ state }} in ('failed', 'up_for_retry') then 'failed'
    when {{ state }} in ('skipped', 'upstream_failed', 'removed') then {{ state }}
    when {{ state }} in ('running', 'queued', 'scheduled', 'deferred', 'up_for_reschedule', 'restarting')
      then 'unfinished'
    else 'none'
  end
{%- endmacro %}
