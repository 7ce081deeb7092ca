"""The real DAG, run with `airflow dags test` as `make demo` does, on the sample corpus: on the
embedded default (local directory + SQLite) and on a real S3 server + real Postgres."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from mlops.io.metadata import MetadataStore
from mlops.io.objects import open_object_store
from mlops.stages import STAGE_NAMES
from tests.conftest import REPO
from tests.fixtures.platform import platform_settings

pytestmark = pytest.mark.e2e
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def settings_env(settings) -> dict[str, str]:
    """The MLOPS_* variables that give a separate process the same Settings."""
    store = settings.object_store
    env = {
        "MLOPS_DATA_DIR": str(settings.data_dir),
        "MLOPS_WORKERS": str(settings.workers),
        "MLOPS_BATCH_SIZE": "5",
        "MLOPS_LIMITS__MAX_FILE_BYTES": str(settings.limits.max_file_bytes),
        "MLOPS_OBJECT_STORE__BACKEND": store.backend,
        "MLOPS_OBJECT_STORE__BUCKET": store.bucket,
        "MLOPS_METADATA__URL": settings.metadata_url,
    }
    if store.backend == "s3":
        env |= {
            "MLOPS_OBJECT_STORE__ENDPOINT_URL": store.endpoint_url,
            "MLOPS_OBJECT_STORE__ACCESS_KEY_ID": store.access_key_id.get_secret_value(),
            "MLOPS_OBJECT_STORE__SECRET_ACCESS_KEY": store.secret_access_key.get_secret_value(),
        }
    return env


@pytest.fixture(scope="module")
def airflow_db():
    subprocess.run([AIRFLOW, "db", "migrate"], check=True, capture_output=True, cwd=REPO)


def dags_test(settings, conf: dict | None = None) -> dict:
    env = {**os.environ, **settings_env(settings)}
    command = [AIRFLOW, "dags", "test", "document_processing_pipeline"]
    if conf:
        command += ["--conf", json.dumps(conf)]
    result = subprocess.run(command, check=False, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "state=success" in result.stdout + result.stderr
    store = open_object_store(settings)
    return json.loads(store.get_bytes(f"{settings.prefixes.reports}/latest/run_summary.json"))


def test_dag_processes_the_corpus_then_skips_it(airflow_db, corpus, backend_settings):
    settings = backend_settings
    store = open_object_store(settings)
    corpus.upload(store)
    expected_quarantine = {name: label["expected_quarantine_reason"] for name, label in corpus.labels.items()
                           if label["expected_quarantine_reason"]}

    first = dags_test(settings)

    documents = first["documents"]
    assert documents["seen"] == len(corpus.labels)
    assert documents["quarantined"] == len(expected_quarantine)
    assert documents["new"] == documents["accepted"] + documents["quarantined"] + documents["duplicates"]
    assert first["quarantine_reasons"] == dict(Counter(expected_quarantine.values()))
    assert first["extraction"]["documents"] == documents["accepted"]
    assert first["extraction"]["text_layer_pages"] > 0 and first["extraction"]["ocr_pages"] > 0
    assert first["extraction"]["field_accuracy"] >= 0.9
    assert first["validation"]["status"] in {"PASSED", "WARNING", "FAILED"}
    assert first["anomalies"]["count"] >= len([1 for label in corpus.labels.values() if label["anomalies"]])
    assert set(first["bias"]) == {"doc_type", "servicer", "format", "page_bucket", "scan_quality"}
    assert set(first["stage_seconds"]) == set(STAGE_NAMES) - {"generate_reports"}  # still running
    report = store.get_bytes(f"{settings.prefixes.reports}/{first['run_id']}/report.html").decode()
    assert first["run_id"] in report and "plotly" in report

    metadata = MetadataStore.from_settings(settings)
    run = metadata.get_run(first["run_id"])
    assert run["status"] in {"success", "partial", "failed"} and run["finished_at"]
    assert len(metadata.extractions(first["run_id"])) == documents["accepted"]
    anomalous = {label["sha256"] for label in corpus.labels.values() if label["anomalies"]}
    assert anomalous <= {finding["sha256"] for finding in metadata.findings(first["run_id"])}

    second = dags_test(settings, conf={"reprocess": False})
    assert second["run_id"] != first["run_id"]
    assert second["documents"]["skipped"] == second["documents"]["seen"] == len(corpus.labels)
    assert second["documents"]["new"] == second["extraction"]["documents"] == 0
    assert len(metadata.extractions(second["run_id"])) == 0


def test_a_failing_task_leaves_an_audit_event(airflow_db, tmp_path):
    """validate_documents before any acquire: the task fails, Airflow schedules a retry and the
    retry callback writes the error to the platform's audit log."""
    settings = platform_settings(tmp_path)
    env = {**os.environ, **settings_env(settings)}
    command = [AIRFLOW, "tasks", "test", "document_processing_pipeline", "validate_documents", "2026-01-01"]
    result = subprocess.run(command, check=False, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "up_for_retry" in result.stdout + result.stderr

    events = MetadataStore.from_settings(settings).events()
    (event,) = [event for event in events if event["event"] == "task_retried"]
    assert event["stage"] == "validate_documents"
    assert "acquire_documents/documents" in event["details"]["error"]
