"""Airflow integration: the provider entry point and the ``datacoves_airflow_db_sync`` task decorator."""
