#!/usr/bin/env bash
# Create the dbt virtual environment used by tests/test_dbt_package.py (dbt build on real mirrors).
#
#   tests/dbt_env.sh [VENV_DIR]      (default: <repo>/.venv-dbt)
#
# dbt-core and Airflow 3.3 pin conflicting versions of protobuf, pathspec and importlib-metadata, so dbt lives in a
# virtual environment of its own; the tests call its `dbt` executable in a subprocess. dbt-core 1.12 downloads a
# parser while it installs, which fails without internet, hence the upper bound. dbt-snowflake and dbt-redshift are
# there only to compile the package's models for those warehouses (nothing connects to them); sqlglot parses the
# compiled SQL in the test environment.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$repo/.venv-dbt}"
python="${DBT_PYTHON:-3.11}"
uv venv --quiet --allow-existing --python "$python" "$venv"
uv pip install --quiet --compile-bytecode -p "$venv/bin/python" \
  "dbt-core>=1.10,<1.12" "dbt-duckdb==1.11.*" "dbt-postgres==1.11.*" "dbt-snowflake==1.12.*" "dbt-redshift==1.11.*"
"$venv/bin/python" -c "from dbt.version import __version__; import dbt.adapters.duckdb, dbt.adapters.postgres; print('dbt', __version__, 'ready in $venv')"
