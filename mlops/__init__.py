"""Loan-document MLOps platform: the stage library behind the Airflow DAG, DVC and the CLI."""

__version__ = "0.1.0"
