"""Shared fixtures: real servers live in tests/fixtures/ and are loaded as plugins.

Airflow reads its configuration when first imported, so its home (a throwaway directory with
a SQLite database), the DAG folder and "no example DAGs" are set here, before any test runs.
"""

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="mlops-test-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# The trained extractor `make test` builds (make models); tests keep their data elsewhere.
os.environ.setdefault("MLOPS_EXTRACT__MODEL_DIR", str(REPO / "data" / "models"))

pytest_plugins = ["tests.fixtures.s3_server", "tests.fixtures.postgres", "tests.fixtures.platform"]
