"""The monitoring DAGs run for real with `airflow dags test`, in a subprocess with the MLOPS_*
settings of a store built here: data_quality_monitoring on a stale landing area fails its run
after alerting a local webhook, writing reports/monitoring/latest.json and regenerating
reports/dashboard.html; bias_detection_pipeline
writes its report over the stored runs' bias tables."""

import json
import os
import re
import subprocess
import time

import pytest

from mlops.io.catalog import Catalog
from mlops.io.metadata import MetadataStore
from mlops.io.objects import open_object_store
from mlops.monitoring.bias_window import BIAS_TABLE
from tests.conftest import REPO
from tests.e2e.test_dag_run import AIRFLOW, settings_env
from tests.fixtures.alert_receivers import HttpReceiver
from tests.fixtures.platform import platform_settings
from tests.integration.test_bias_window import bias_rows
from tests.unit.labelled_tables import labelled_table, store_run

pytestmark = pytest.mark.e2e


def airflow_dags_test(dag_id: str, settings, env: dict[str, str]) -> tuple[str, str]:
    """Run the DAG once; returns the DAG run's final state and the output."""
    command = [AIRFLOW, "dags", "test", dag_id]
    env = {**os.environ, **settings_env(settings), **env}
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    output = result.stdout + result.stderr
    ended = re.search(r"DagRun Finished: .*? state=(\w+)", output)
    assert ended, output[-3000:]
    return ended.group(1), output


def test_monitoring_dag_on_a_stale_landing_area_alerts_and_fails_its_run(airflow_db, tmp_path):
    settings = platform_settings(tmp_path)
    with MetadataStore(settings.metadata_url) as metadata:
        metadata.migrate()
        for seed in (1, 2, 4, 5, 6):
            store_run(metadata, f"clean-{seed}", labelled_table(seed))
    landed = settings.data_dir / "landing" / "statement-1.pdf"
    landed.parent.mkdir(parents=True)
    landed.write_bytes(b"%PDF-1.4 stand-in")
    three_days_ago = time.time() - 72 * 3600
    os.utime(landed, (three_days_ago, three_days_ago))
    receiver = HttpReceiver()
    try:
        state, output = airflow_dags_test("data_quality_monitoring", settings, {"ALERT_WEBHOOK_URL": receiver.url("/hook")})
    finally:
        receiver.close()

    assert state == "failed", output[-4000:]
    assert "ALERT: no new document for 72.0 h (alert after 36 h)" in output
    [post] = receiver.posts
    assert (json.loads(post.body)["rule"], json.loads(post.body)["severity"]) == ("freshness", "warning")
    latest = json.loads((settings.data_dir / "reports" / "monitoring" / "latest.json").read_text())
    assert latest["verdict"] == "ALERT"
    assert latest["drift"]["headline"] == "NO DRIFT in run clean-6: 39 checks against 4 baseline runs"
    assert latest["results"]["run_id"] == "clean-6"
    dashboard = (settings.data_dir / "reports" / "dashboard.html").read_text()
    assert "Last run PASSED · 0 of the last 5 runs failed" in dashboard and "clean-6" in dashboard


def test_bias_dag_writes_its_report_with_the_flagged_slice(airflow_db, tmp_path):
    settings = platform_settings(tmp_path)
    with MetadataStore(settings.metadata_url) as metadata:
        metadata.migrate()
        for seed in range(1, 5):
            metadata.start_run(f"run-{seed}", "fingerprint", "1")
            Catalog(open_object_store(settings), "runs", f"run-{seed}").save_table(BIAS_TABLE, bias_rows(seed))
            metadata.finish_run(f"run-{seed}", "success", {}, verdict="passed")

    state, output = airflow_dags_test("bias_detection_pipeline", settings, {
        "MLOPS_BIAS__WINDOW_MIN_DOCUMENTS": "10", "MLOPS_BIAS__BOOTSTRAP_SAMPLES": "50"})  # fmt: skip

    assert state == "success", output[-4000:]
    assert "BIAS FLAGGED over 4 runs (120 documents): completeness for scan_quality=poor" in output
    [folder] = (settings.data_dir / "reports" / "bias").iterdir()
    report = json.loads((folder / "bias_report.json").read_text())
    assert {(flag["slice"], flag["metric"]) for flag in report["flagged"]} == {
        ("poor", "completeness"), ("poor", "field_accuracy")}  # fmt: skip
    assert "re-scan the poor-quality documents" in (folder / "bias_report.html").read_text()
