"""One dlt cycle, as the original decorator's engine would run it: ``sql_database`` with the pyarrow backend into
DuckDB; ``dag_run`` and ``task_instance`` incremental on ``updated_at`` and merged on their natural keys, the other
tables replaced. Runs in the benchmark's own environment (.venv-bench), never in the project's.

Usage: python bench/dlt_sync.py SOURCE_URL DUCKDB_PATH PIPELINES_DIR TABLE [TABLE ...]
"""

from __future__ import annotations

import sys

import dlt
from dlt.sources.sql_database import sql_database

MERGED = {
    "dag_run": ("dag_id", "run_id"),
    "task_instance": ("dag_id", "task_id", "run_id", "map_index"),
}


def main(url: str, path: str, pipelines_dir: str, tables: list[str]) -> None:
    source = sql_database(credentials=url, table_names=tables, backend="pyarrow")
    for name in tables:
        resource = source.resources[name]
        if name in MERGED:
            resource.apply_hints(
                incremental=dlt.sources.incremental("updated_at"),
                primary_key=MERGED[name],
                write_disposition="merge",
            )
        else:
            resource.apply_hints(write_disposition="replace")
    pipeline = dlt.pipeline(
        pipeline_name="airflow_bench",
        destination=dlt.destinations.duckdb(path),
        dataset_name="airflow",
        pipelines_dir=pipelines_dir,
    )
    info = pipeline.run(source)
    info.raise_on_failed_jobs()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
