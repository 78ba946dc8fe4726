#!/usr/bin/env bash
# Create the Airflow 2.11 virtual environment used by tests/test_airflow_decorator.py (the Airflow 2 run).
#
#   tests/airflow2_env.sh [VENV_DIR]      (default: <repo>/.venv-airflow2)
#   AIRFLOW2_VERSION=2.10 tests/airflow2_env.sh .venv-airflow210    (Airflow 2.10, for the real-schema secrets test)
#
# Airflow 2.11 pins SQLAlchemy < 2.0 while cdc_sync declares >= 2.0; cdc_sync only uses SQLAlchemy's URL object,
# which 1.4 has, so the overrides below let both live in one environment (and keep alembic at a release that still
# supports SQLAlchemy 1.4). psycopg2 is what Airflow 2 itself uses
# to reach a PostgreSQL metadata database; pymysql lets the tests migrate a 2.11 schema on MariaDB.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$repo/.venv-airflow2}"
python="${AIRFLOW2_PYTHON:-3.11}"
version="${AIRFLOW2_VERSION:-2.11}"
overrides="$(mktemp)"
trap 'rm -f "$overrides"' EXIT
printf 'sqlalchemy>=1.4.49,<2.0\nalembic>=1.13,<1.16\n' > "$overrides"
uv venv --quiet --allow-existing --python "$python" "$venv"
uv pip install --quiet --compile-bytecode -p "$venv/bin/python" --override "$overrides" \
  "apache-airflow==$version.*" "psycopg[binary]>=3.2" "psycopg2-binary>=2.9" "pymysql>=1.1" -e "$repo"
"$venv/bin/python" -c "import airflow, cdc_sync; print('airflow', airflow.__version__, 'ready in $venv')"
