"""The production stack without Docker: docker-compose.yml's components as processes on 127.0.0.1.

Postgres (fresh databases for Airflow and the platform, each with its own role), Redis with a
password, SeaweedFS in MinIO's place, ``docker/airflow-init.sh``, then the Airflow api-server,
scheduler, dag-processor, triggerer and a Celery worker, all with the ``x-airflow-common``
environment of docker-compose.yml (tests/fixtures/airflow_stack.py). Then, as the README's
"Operations" section does it: a JWT from ``POST /auth/token``, unpause, trigger with params, poll
the run, and check what an ops engineer would: task states, where the tasks ran, the report in
the bucket, the platform's metadata rows, the task logs in the log bucket.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from mlops.io.metadata import MetadataStore
from mlops.sample_data import generate_corpus
from mlops.stages import normalise_run_id
from mlops.stages.generate_reports import FINAL_STATUS
from tests.conftest import REPO
from tests.fixtures import browser
from tests.fixtures.airflow_stack import NativeStack
from tests.fixtures.platform import TEST_MAX_FILE_BYTES

pytestmark = pytest.mark.e2e

DAG_ID = "document_processing_pipeline"
BUCKET = "loan-documents"
BATCH_SIZE = 2  # a few good documents still make several mapped extract_data tasks
CORPUS_COUNT = 6
RUN_TIMEOUT_SECONDS = 600
MIN_FIELD_ACCURACY = 0.75
LOG_UPLOAD_TIMEOUT_SECONDS = 60

# What differs from docker-compose.yml besides hosts, ports and paths: test-sized limits, no
# scheduled (@daily) run on unpausing, so the triggered run is the one that takes the corpus
# (otherwise the run of the latest interval is created first and, with max_active_runs=1, runs first),
# and the trained extractor: compose finds it under the mounted project's data/models, while the
# stack's data directory here is a throw-away one, so it loads the model `make models` built.
TEST_ENV = {
    "MLOPS_BATCH_SIZE": str(BATCH_SIZE),
    "MLOPS_LIMITS__MAX_FILE_BYTES": str(TEST_MAX_FILE_BYTES),
    "MLOPS_EXTRACT__MODEL_DIR": os.environ.get("MLOPS_EXTRACT__MODEL_DIR", str(REPO / "data" / "models")),
    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    native = NativeStack(tmp_path_factory.mktemp("native-stack"), REPO, extra_env=dict(TEST_ENV))
    try:
        native.start()
        print(f"\nnative stack up: {native.timings}", flush=True)
        yield native
    finally:
        native.stop()
        print(f"\nnative stack timings: {native.timings}", flush=True)


@pytest.fixture(scope="module")
def corpus_labels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    directory = tmp_path_factory.mktemp("native-corpus")
    rows = generate_corpus(
        CORPUS_COUNT,
        11,
        lambda name, data: (directory / name).write_bytes(data),
        max_file_bytes=TEST_MAX_FILE_BYTES,
    )
    return directory, {row["filename"]: row for row in rows}


def test_unauthenticated_api_calls_are_refused(stack: NativeStack) -> None:
    assert stack.api("GET", "/api/v2/dags", token=False).status_code in (401, 403)
    assert stack.api("GET", "/api/v2/dags", token="not-a-jwt").status_code in (401, 403)
    with pytest.raises(RuntimeError, match="401|403"):
        stack.login(password="wrong-password-123456")
    assert stack.api("GET", "/api/v2/dags").status_code == 200


def test_the_ui_lists_the_three_dags_each_with_its_documentation(stack: NativeStack) -> None:
    expected = {DAG_ID, "data_quality_monitoring", "bias_detection_pipeline"}
    deadline = time.monotonic() + 120  # the DAG processor parses the other two after the first
    while (listed := {dag["dag_id"] for dag in stack.api("GET", "/api/v2/dags").json()["dags"]}) < expected:
        assert time.monotonic() < deadline, f"the UI lists {sorted(listed)}"
        time.sleep(2)
    for dag_id in sorted(expected):
        details = stack.api("GET", f"/api/v2/dags/{dag_id}/details").json()
        assert len(details["doc_md"] or "") > 200, (dag_id, details.get("doc_md"))
        assert details["timetable_summary"], dag_id  # scheduled: daily, hourly, weekly


def task_instances(stack: NativeStack, run_id: str) -> list[dict]:
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances"
    response = stack.api("GET", path, params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["task_instances"]


def task_log(stack: NativeStack, run_id: str, ti: dict) -> str:
    """A task's log as the UI shows it (from the log bucket once the task has finished)."""
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{ti['task_id']}/logs/{ti['try_number'] or 1}"
    params = {"map_index": ti["map_index"]} if ti["map_index"] >= 0 else {}
    response = stack.api("GET", path, params=params, headers={"Accept": "application/json"})
    if response.status_code != 200:
        return f"{response.status_code} {response.text}"
    lines = []
    for line in response.json().get("content") or []:
        if isinstance(line, str):
            lines.append(line)
            continue
        lines.append(f"{line.get('timestamp', '')} {line.get('level', '')} {line.get('event', '')}")
        for error in line.get("error_detail") or []:
            frames = "\n".join(
                f"    {f['filename']}:{f['lineno']} {f['name']}" for f in error.get("frames", [])
            )
            lines.append(f"  {error.get('exc_type')}: {error.get('exc_value')}\n{frames}")
    return "\n".join(lines)


def test_everything_listens_on_loopback_only(stack: NativeStack) -> None:
    listening = stack.listening()
    assert ("api-server", "127.0.0.1", stack.endpoints.api_port) in listening, listening
    assert {address for _, address, _ in listening} == {"127.0.0.1"}, listening


def wait_for_run(stack: NativeStack, run_id: str) -> dict:
    """Poll the run until it ends, or a task fails or is up for retry (a retry here means a bug);
    quality_gate fails by design when the verdict is FAILED."""
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while True:
        response = stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}")
        assert response.status_code == 200, response.text
        run = response.json()
        if run["state"] in ("success", "failed"):
            return run
        bad = [
            ti for ti in task_instances(stack, run_id)
            if ti["state"] in ("failed", "up_for_retry") and ti["task_id"] != "quality_gate"
        ]  # fmt: skip
        if bad:
            logs = "\n".join(f"--- log of {ti['task_id']}[{ti['map_index']}] ({ti['state']}) ---\n"
                             f"{task_log(stack, run_id, ti)[-12000:]}" for ti in bad)  # fmt: skip
            pytest.fail(f"run {run_id}: {[(ti['task_id'], ti['state']) for ti in bad]}\n{logs}")
        if time.monotonic() > deadline:
            pytest.fail(f"run {run_id} still {run['state']} after {RUN_TIMEOUT_SECONDS} s")
        for component in stack.components:
            assert component.running(), f"{component.name} exited during the run"
        time.sleep(3)


def test_ops_engineer_runs_the_pipeline_on_the_celery_worker(
    stack: NativeStack, corpus_labels: tuple[Path, dict[str, dict]]
) -> None:
    try:
        check_pipeline_run(stack, *corpus_labels)
    except BaseException:
        print(f"\n{stack.log_tails(80)}", flush=True)
        raise


def check_pipeline_run(stack: NativeStack, directory: Path, labels: dict[str, dict]) -> None:
    s3 = stack.s3_client()
    for path in sorted(directory.iterdir()):  # labels.jsonl too: the landing area ignores it
        s3.put_object(Bucket=BUCKET, Key=f"landing/{path.name}", Body=path.read_bytes())

    response = stack.api("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
    assert response.status_code == 200 and response.json()["is_paused"] is False, response.text
    conf = {"landing_prefix": "landing", "max_documents": 0, "reprocess": False}
    began = time.monotonic()
    response = stack.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
    assert response.status_code in (200, 201), response.text
    run_id = response.json()["dag_run_id"]
    assert response.json()["conf"] == conf

    run = wait_for_run(stack, run_id)
    stack.timings["dag_run"] = round(time.monotonic() - began, 1)
    print(f"\nrun {run_id}: {run['state']} in {stack.timings['dag_run']} s", flush=True)

    instances = task_instances(stack, run_id)
    states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in instances}
    gate_state = states.pop(("quality_gate", -1))
    assert set(states.values()) == {"success"}, states

    # The summary, in the bucket as an ops engineer reads it (README "Read a run's report"), under
    # the platform's run id: Airflow's with every character unsafe in object keys replaced.
    run_id = normalise_run_id(airflow_run_id := run_id)
    summary = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"reports/{run_id}/run_summary.json")["Body"].read()
    )
    # The sample corpus's verdict follows the extractor's quality; the run state tells it.
    assert gate_state == {"success": "success", "warning": "skipped", "failed": "failed"}[summary["status"]]
    assert run["state"] == ("failed" if summary["status"] == "failed" else "success"), summary["status_reasons"]
    report = s3.get_object(Bucket=BUCKET, Key=f"reports/{run_id}/report.html")["Body"].read().decode()
    assert summary["run_id"] == run_id and run_id in report
    latest = json.loads(s3.get_object(Bucket=BUCKET, Key="reports/latest/run_summary.json")["Body"].read())
    assert latest["run_id"] == run_id
    check_one_click_to_the_report(stack, airflow_run_id, summary)
    expected_quarantine = {
        name: label["expected_quarantine_reason"]
        for name, label in labels.items()
        if label["expected_quarantine_reason"]
    }
    documents = summary["documents"]
    assert documents["seen"] == len(labels)
    assert documents["quarantined"] == len(expected_quarantine)
    assert summary["quarantine_reasons"] == dict(Counter(expected_quarantine.values()))
    assert documents["new"] == documents["accepted"] + documents["quarantined"] + documents["duplicates"]
    assert summary["extraction"]["documents"] == documents["accepted"] > 0
    # The trained extractor on text PDFs and scans: a modest floor (the model is retrained as it improves).
    assert summary["extraction"]["field_accuracy"] >= MIN_FIELD_ACCURACY, summary["extraction"]

    # Every task ran on the Celery worker, the mapped extraction too, one task per batch.
    extract = sorted(map_index for task_id, map_index in states if task_id == "extract_data")
    assert extract == list(range(math.ceil(documents["accepted"] / BATCH_SIZE))) and len(extract) >= 2, states
    assert {ti["hostname"] for ti in instances} == {stack.worker_hostname}
    assert {ti["queue"] for ti in instances} == {"default"}
    worker_log = stack.component("worker").log.read_text(errors="replace")
    for task_id, _ in states:
        assert f"task_id='{task_id}'" in worker_log or f'"task_id": "{task_id}"' in worker_log, task_id

    # The platform's metadata database (Postgres, through the mlops_metadata connection's database).
    with MetadataStore(stack.platform_db_url()) as metadata:
        row = metadata.get_run(run_id)
        # Closed by generate_reports with the quality gate's verdict (a FAILED gate is not a failed task).
        assert row is not None and row["finished_at"], row
        assert row["status"] == FINAL_STATUS[summary["status"]], (row["status"], summary["status"])
        assert len(metadata.extractions(run_id)) == documents["accepted"]

    # Task logs went to the log bucket (remote logging through minio_default) and the API serves them.
    # The worker uploads a task's log after it has reported the task's state, so the last one may lag.
    prefix = f"task-logs/dag_id={DAG_ID}/run_id={airflow_run_id}/task_id=generate_reports/"
    deadline = time.monotonic() + LOG_UPLOAD_TIMEOUT_SECONDS
    while not s3.list_objects_v2(Bucket="airflow-logs", Prefix=prefix).get("KeyCount"):
        assert time.monotonic() < deadline, f"no task log under s3://airflow-logs/{prefix}"
        time.sleep(1)
    log = task_log(stack, airflow_run_id, next(ti for ti in instances if ti["task_id"] == "generate_reports"))
    assert "generate_reports" in log and "airflow-logs" in log, log[:3000]


def check_one_click_to_the_report(stack: NativeStack, airflow_run_id: str, summary: dict) -> None:
    """The run page's Report tab shows the report, served by the api-server behind its login, and
    the report links back to the run (README "From a failed run to its evidence")."""
    run_url = f"{stack.api_url}/dags/{DAG_ID}/runs/{quote(airflow_run_id, safe='')}"
    report_url = f"{stack.api_url}/mlops/reports/{summary['run_id']}/report.html"
    assert summary["links"] == {"airflow_run": run_url, "report": report_url}
    views = [view for plugin in stack.api("GET", "/api/v2/plugins").json()["plugins"]
             for view in plugin["external_views"]]  # fmt: skip
    assert {(view["name"], view["destination"]) for view in views} >= {
        ("Report", "dag_run"), ("Latest report", "nav"), ("Dashboard", "nav")}  # fmt: skip

    served = stack.api("GET", f"/mlops/reports/{quote(airflow_run_id, safe='')}/report.html")
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/html"), served.text[:500]
    assert f"Run {summary['run_id']}" in served.text
    asset = re.search(r'src="\.\./(assets/[^"]+)"', served.text).group(1)
    assert stack.api("GET", f"/mlops/reports/{asset}").status_code == 200  # the shared plotly.js
    assert stack.api("GET", f"/mlops/reports/{summary['run_id']}/report.html", token=False).status_code in (401, 403)
    assert stack.api("GET", "/mlops/reports/latest/..%2F..%2Fconfig%2Fpipeline_config.yaml").status_code == 404
    missing = stack.api("GET", "/mlops/reports/no_such_run/report.html")
    assert missing.status_code == 404 and "No report.html for run <code>no_such_run</code>" in missing.text
    dashboard = stack.api("GET", "/mlops/reports/dashboard.html")  # Browse -> Dashboard
    assert dashboard.status_code == 200 and dashboard.headers["content-type"].startswith("text/html")
    assert f'href="{summary["run_id"]}/report.html"' in dashboard.text  # resolves to the report served above
    dashboard_asset = re.search(r'src="(assets/[^"]+)"', dashboard.text).group(1)
    assert stack.api("GET", f"/mlops/reports/{dashboard_asset}").status_code == 200
    assert stack.api("GET", "/mlops/reports/dashboard.html", token=False).status_code in (401, 403)

    tab = browser.report_tab_of_airflow_run(run_url, report_url, stack.token)
    assert tab.first_text.upper().startswith(f"{summary['status'].upper()} RUN {summary['run_id'].upper()}"), tab
    assert tab.charts_drawn >= 1 and tab.failed_requests == [], tab
