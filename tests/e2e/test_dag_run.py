"""The real DAG, run with `airflow dags test` as `make demo` does, on the sample corpus: on the
embedded default (local directory + SQLite) and on a real S3 server + real Postgres; and on
documents of layouts the trained extractor never saw, which its quality gate must refuse.

The Airflow run's state tells the truth: a FAILED verdict fails the run after its report is
written, a WARNING skips the quality_gate task, a configuration error fails at once (no retry)
and still publishes the failed run's report, and a bad trigger-form value never starts a run.
With an OpenLineage file transport, each task's events name the datasets it read and wrote after
the object-store keys; without one (every other run) the provider stays off."""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from fpdf import FPDF

from mlops.document_families import non_loan_document
from mlops.io.metadata import MetadataStore
from mlops.io.objects import open_object_store
from mlops.stages import STAGE_NAMES
from mlops.stages.generate_reports import FINAL_STATUS
from tests.conftest import REPO
from tests.fixtures import browser
from tests.fixtures.platform import platform_settings

pytestmark = pytest.mark.e2e
DAG_ID = "document_processing_pipeline"
GATE = "quality_gate"
AIRFLOW = str(Path(sys.executable).parent / "airflow")
MIN_FIELD_ACCURACY = 0.75


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


def airflow_dags_test(settings, conf: dict | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [AIRFLOW, "dags", "test", DAG_ID]
    if conf:
        command += ["--conf", json.dumps(conf)]
    env = {**os.environ, **settings_env(settings), **(env or {})}
    return subprocess.run(command, check=False, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)


def dags_test(settings, conf: dict | None = None, env: dict | None = None, state: str | None = "success") -> dict:
    """One DAG run; checks it ended in ``state`` (None: either) and returns reports/latest/run_summary.json."""
    result = airflow_dags_test(settings, conf, env)
    output = result.stdout + result.stderr
    ended = re.search(r"DagRun Finished: .*? state=(\w+)", output)
    assert ended, output[-3000:]
    assert state in (None, ended.group(1)), output[-6000:]
    assert result.returncode == (0 if ended.group(1) == "success" else 1), output[-3000:]
    store = open_object_store(settings)
    return json.loads(store.get_bytes(f"{settings.prefixes.reports}/latest/run_summary.json"))


def last_run_states() -> tuple[str, dict[str, tuple[str, int]]]:
    """The state of the DAG's latest run and (state, try number) of each of its tasks, from
    Airflow's own database (the one `airflow dags test` used)."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == DAG_ID).order_by(DagRun.id.desc()).first()
        tasks = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances(session=session)}
        return run.state, tasks


def assert_run_state_tells_the_verdict(summary: dict) -> None:
    """Default gate.fail_run_on (failed): FAILED fails the run at quality_gate, WARNING skips it."""
    state, tasks = last_run_states()
    gate_state = {"success": "success", "warning": "skipped", "failed": "failed"}[summary["status"]]
    assert tasks["generate_reports"][0] == "success", tasks
    assert tasks[GATE] == (gate_state, 1), tasks
    assert state == ("failed" if summary["status"] == "failed" else "success"), (state, summary["status_reasons"])


def test_dag_processes_the_corpus_then_skips_it(airflow_db, corpus, backend_settings):
    settings = backend_settings
    store = open_object_store(settings)
    corpus.upload(store)
    expected_quarantine = {name: label["expected_quarantine_reason"] for name, label in corpus.labels.items()
                           if label["expected_quarantine_reason"]}

    events_file = settings.data_dir.parent / "openlineage" / "events.jsonl"
    events_file.parent.mkdir(parents=True, exist_ok=True)
    lineage_env = {"AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events_file),
                                                                   "append": True}),
                   "AIRFLOW__OPENLINEAGE__NAMESPACE": "loan-mlops-test"}  # fmt: skip
    # the sample corpus's verdict follows the extractor's quality
    first = dags_test(settings, state=None, env=lineage_env)

    assert_run_state_tells_the_verdict(first)
    documents = first["documents"]
    assert documents["seen"] == len(corpus.labels)
    assert documents["quarantined"] == len(expected_quarantine)
    assert documents["new"] == documents["accepted"] + documents["quarantined"] + documents["duplicates"]
    assert first["quarantine_reasons"] == dict(Counter(expected_quarantine.values()))
    assert first["extraction"]["documents"] == documents["accepted"]
    assert first["extraction"]["text_layer_pages"] > 0 and first["extraction"]["ocr_pages"] > 0
    # the trained extractor on text PDFs and scans: a modest floor (the model is retrained as it improves)
    assert first["extraction"]["field_accuracy"] >= MIN_FIELD_ACCURACY, first["extraction"]
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
    assert_lineage_of_the_run(events_file, settings, first["run_id"])

    second = dags_test(settings, conf={"reprocess": False})  # no OpenLineage transport: provider off
    assert second["run_id"] != first["run_id"]
    assert second["status"] == "success"  # nothing new is no verdict to fail on
    assert second["status_reasons"] == [f"no new documents: all {len(corpus.labels)} were processed by earlier runs"]
    assert second["documents"]["skipped"] == second["documents"]["seen"] == len(corpus.labels)
    assert second["documents"]["new"] == second["extraction"]["documents"] == 0
    assert len(metadata.extractions(second["run_id"])) == 0

    if settings.object_store.backend == "local":
        reports = Path(settings.data_dir) / settings.prefixes.reports
        anomalous_files = {name for name, label in corpus.labels.items() if label["anomalies"]}
        check_report_in_a_browser(reports / first["run_id"] / "report.html", first, anomalous_files)
        for visit in browser.visit(reports / second["run_id"] / "report.html"):
            assert f"No new documents: all {len(corpus.labels)} were processed by earlier runs." in visit.body_text


def assert_lineage_of_the_run(events_file: Path, settings, run_id: str) -> None:
    """The OpenLineage events of one DAG run (file transport): a START and a COMPLETE for each task,
    and each stage's datasets named after the object-store keys the run wrote."""
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    by_task: dict[str, Counter] = {}
    datasets: dict[str, tuple[set, set]] = {}
    tables: set[tuple[str, str]] = set()  # what store_results wrote outside the object store
    for event in events:
        assert event["job"]["namespace"] == "loan-mlops-test", event["job"]
        task = event["job"]["name"].removeprefix(f"{DAG_ID}.")
        if task == DAG_ID:
            continue
        by_task.setdefault(task, Counter())[event["eventType"]] += 1
        if event["eventType"] == "COMPLETE":
            inputs, outputs = datasets.setdefault(task, (set(), set()))
            inputs.update(dataset_key(settings, d) for d in event["inputs"])
            outputs.update(dataset_key(settings, d) for d in event["outputs"])
            if task == "store_results":
                tables |= {(d["namespace"], d["name"]) for d in event["outputs"] if dataset_key(settings, d) is None}
    batches = by_task["extract_data"]["START"]
    assert batches >= 2, by_task  # mapped: one START and COMPLETE per batch
    for task in STAGE_NAMES:
        assert by_task[task]["START"] == by_task[task]["COMPLETE"] == (batches if task == "extract_data" else 1), by_task
    assert by_task[GATE]["START"] == 1 and sum(by_task[GATE].values()) == 2, by_task

    prefixes, run, reports = settings.prefixes, f"{settings.prefixes.runs}/{run_id}", settings.prefixes.reports
    # each task its own datasets (None: a metadata table), not those of the tasks before it
    assert datasets["extract_data"] == ({prefixes.raw, f"{run}/preprocess_documents/documents.parquet"},
                                        {f"{run}/extract_data", None})  # fmt: skip
    assert prefixes.landing in datasets["acquire_documents"][0] and prefixes.raw in datasets["acquire_documents"][1]
    assert datasets["generate_reports"][1] == {f"{reports}/{run_id}/report.html", f"{reports}/{run_id}/run_summary.json",
                                               f"{reports}/latest/report.html", f"{reports}/latest/run_summary.json", None}  # fmt: skip
    if settings.metadata_url.startswith("sqlite"):
        assert tables == {("file", Path(settings.metadata_url.removeprefix("sqlite:///")).resolve().as_posix())}
    else:  # postgres://host:port, <database>.<schema>.<table>: no credentials
        assert any(namespace.startswith("postgres://") and name.endswith(".extractions") for namespace, name in tables)
        assert not any("@" in namespace for namespace, _ in tables), tables
    # every object a stage says it wrote is there: a key, or a prefix with objects under it (never
    # list the whole local root: hashing the open SQLite file drops this process's locks on it)
    store = open_object_store(settings)
    for task in STAGE_NAMES:
        for key in datasets[task][1] - {None, f"{run}/detect_anomalies/isolation_forest.joblib"}:  # needs history
            assert store.exists(key) or next(iter(store.list(key)), None), (task, key)
    assert store.exists(f"{run}/extract_data/part-0000.parquet")


def dataset_key(settings, dataset: dict) -> str | None:
    """The object-store key an OpenLineage dataset names; None for a metadata-database table."""
    namespace, name = dataset["namespace"], dataset["name"]
    if namespace == f"s3://{settings.object_store.bucket}":
        return name
    root = settings.local_root.resolve().as_posix()
    sqlite_file = Path(settings.metadata_url.removeprefix("sqlite:///")).resolve().as_posix()
    if namespace == "file" and name.startswith(f"{root}/") and name != sqlite_file:
        return name.removeprefix(f"{root}/")
    return None


def check_report_in_a_browser(report: Path, summary: dict, anomalous_files: set[str]) -> None:
    """At desktop and phone widths: the verdict is the first thing read, the charts draw from the
    shared plotly asset with nothing fetched or failing, nothing scrolls sideways, and anomalies
    are named by file."""
    for visit in browser.visit(report):
        assert visit.first_text.upper().startswith(f"{summary['status'].upper()} RUN {summary['run_id'].upper()}"), visit
        assert visit.console_errors == [] and visit.failed_requests == [], visit
        assert visit.overflow_px <= 0, (visit.width, visit.overflow_px)
        assert visit.charts_drawn >= 5, visit.width
        assert any(name in visit.body_text for name in anomalous_files), visit.width
    for visit in browser.visit(report.with_name("validation.html")):  # every expectation, offline
        assert visit.first_text.upper().startswith(f"{summary['validation']['status']} VALIDATION OF RUN"), visit
        assert visit.console_errors == [] and visit.failed_requests == [] and visit.overflow_px <= 0, visit


def test_a_failing_task_leaves_an_audit_event(airflow_db, tmp_path):
    """validate_documents before any acquire: the task fails, Airflow schedules a retry and the
    retry callback writes the error to the platform's audit log."""
    settings = platform_settings(tmp_path)
    env = {**os.environ, **settings_env(settings)}
    command = [AIRFLOW, "tasks", "test", DAG_ID, "validate_documents", "2026-01-01"]
    result = subprocess.run(command, check=False, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "up_for_retry" in result.stdout + result.stderr

    events = MetadataStore.from_settings(settings).events()
    (event,) = [event for event in events if event["event"] == "task_retried"]
    assert event["stage"] == "validate_documents"
    assert "acquire_documents/documents" in event["details"]["error"]


KNOWN_TYPE_EXPECTATION = "expect_column_values_to_be_in_set(doc_type) [critical]"
A5_POINTS = (419.53, 595.28)  # a paper size no layout family uses


def _free_layout_pdf(orientation: str, draw) -> bytes:
    pdf = FPDF(orientation=orientation, unit="pt", format=A5_POINTS)
    pdf.set_auto_page_break(False)
    pdf.add_page()
    draw(pdf)
    return bytes(pdf.output())


def _value_over_caption_cards(pdf: FPDF) -> None:
    """Loan figures as cards on a landscape A5 page, each value printed above a tiny caption."""
    cards = [("$18,240.55", "owed today"), ("5.05 %", "yearly cost of borrowing"), ("Aug 2021", "money sent"),
             ("144", "instalments"), ("$193.40", "per instalment"), ("ZX 88 41 07", "your reference")]  # fmt: skip
    pdf.set_font("Courier", "B", 15)
    pdf.text(30, 40, "where you stand")
    for number, (value, caption) in enumerate(cards):
        x, y = 30 + (number % 3) * 190, 110 + (number // 3) * 130
        pdf.rect(x - 8, y - 30, 170, 70)
        pdf.set_font("Times", "", 18)
        pdf.text(x, y, value)
        pdf.set_font("Courier", "", 6)
        pdf.text(x, y + 22, caption.upper())


def _rotated_margin_notes(pdf: FPDF) -> None:
    """A handwritten-style note: lines at angles across a portrait page, no labels at all."""
    pdf.set_font("Times", "I", 12)
    notes = ["called Tuesday re: the 2,400 balance", "Ms. Ortega says the 11th works",
             "keep receipts 7 yrs", "meter read 04512 / 04733", "dog sitter Sat 9-5"]  # fmt: skip
    for number, note in enumerate(notes):
        with pdf.rotation(angle=(-1) ** number * (8 + 3 * number), x=40, y=80 + number * 95):
            pdf.text(40, 80 + number * 95, note)


def _seating_grid(pdf: FPDF) -> None:
    """A seating chart: a grid of names and seat codes, nothing of a loan in it."""
    names = ("A. Moreau", "K. Tanaka", "L. Osei", "P. Novak", "R. Silva")
    pdf.set_font("Helvetica", "", 7)
    for row in range(12):
        for column in range(5):
            x, y = 25 + column * 110, 40 + row * 30
            pdf.rect(x, y, 100, 24)
            pdf.text(x + 4, y + 10, f"Seat {chr(65 + row)}{column + 1:02d}")
            pdf.text(x + 4, y + 20, names[(row + column) % len(names)])


def unknown_layout_documents() -> dict[str, bytes]:
    """Eight documents no layout family prints: non-loan forms (four text PDFs, one scan) and three
    PDFs drawn here in layouts of their own."""
    documents = {}
    for number, kind in enumerate(("text_pdf", "text_pdf", "text_pdf", "text_pdf", "png")):
        data, row = non_loan_document(kind, f"unknown-layout-{number}")
        documents[row["filename"]] = data
    documents["cards.pdf"] = _free_layout_pdf("landscape", _value_over_caption_cards)
    documents["notes.pdf"] = _free_layout_pdf("portrait", _rotated_margin_notes)
    documents["seating.pdf"] = _free_layout_pdf("portrait", _seating_grid)
    return documents


def test_documents_of_unknown_layouts_fail_the_quality_gate(airflow_db, tmp_path):
    """Documents of layouts the models never saw go through the whole DAG (none is bad input),
    and the run's quality gate says FAILED, naming the critical expectations that failed, instead
    of passing on whatever the extractor guessed; the Airflow run fails at quality_gate, after
    generate_reports has written the report, and is not retried."""
    settings = platform_settings(tmp_path)
    store = open_object_store(settings)
    documents = unknown_layout_documents()
    for name, data in documents.items():
        store.put_bytes(f"landing/{name}", data)

    summary = dags_test(settings, state="failed")

    _, tasks = last_run_states()
    assert tasks["generate_reports"] == ("success", 1) and tasks[GATE] == ("failed", 1), tasks
    assert summary["documents"]["accepted"] == summary["extraction"]["documents"] == len(documents)
    assert summary["documents"]["quarantined"] == 0
    assert summary["validation"]["status"] == "FAILED"
    assert KNOWN_TYPE_EXPECTATION in summary["validation"]["critical_failures"], summary["validation"]
    assert summary["status"] == "failed"
    assert summary["status_reasons"][0].startswith("quality gate FAILED: score ")
    report = store.get_bytes(f"{settings.prefixes.reports}/{summary['run_id']}/report.html").decode()
    assert summary["status_reasons"][0].split(";")[0] in report
    metadata = MetadataStore.from_settings(settings)
    run = metadata.get_run(summary["run_id"])
    assert run["status"] == FINAL_STATUS["failed"] and run["finished_at"]
    rows = metadata.extractions(summary["run_id"])
    assert len(rows) == len(documents)
    # the extractor admits it does not know them (at most a couple typed as a loan document)
    assert sum(row["doc_type"] in (None, "unknown") for row in rows) >= len(documents) - 2, rows
    assert not any(row["validation_pass"] for row in rows if row["doc_type"] in (None, "unknown"))


def test_a_mistyped_landing_prefix_is_a_warning_that_names_it(airflow_db, tmp_path, corpus):
    """Documents under landing/, the run triggered with landng: not a green PASSED over nothing but
    a WARNING naming the prefix, the quality_gate task skipped (and the run failed when WARNING
    is set to fail it)."""
    settings = platform_settings(tmp_path)
    corpus.upload(open_object_store(settings))

    summary = dags_test(settings, conf={"landing_prefix": "landng"})

    assert summary["status"] == "warning"
    assert summary["status_reasons"] == ["no documents found under landing prefix 'landng'"]
    assert summary["landing_prefix"] == "landng"
    assert last_run_states()[1][GATE] == ("skipped", 1)

    strict = dags_test(settings, conf={"landing_prefix": "landng"}, env={"MLOPS_GATE__FAIL_RUN_ON": "warning"},
                       state="failed")  # fmt: skip
    assert strict["status"] == "warning" and strict["run_id"] != summary["run_id"]
    assert last_run_states()[1][GATE] == ("failed", 1)


def test_a_bad_trigger_form_value_never_starts_a_run(airflow_db, tmp_path):
    settings = platform_settings(tmp_path)
    result = airflow_dags_test(settings, conf={"landing_prefix": "/"})
    assert result.returncode != 0
    assert "Invalid input for param landing_prefix" in result.stdout + result.stderr
    metadata = MetadataStore.from_settings(settings)
    metadata.migrate()  # (no task ran to create the platform's tables)
    assert metadata.events() == []


def test_a_config_error_fails_at_once_and_the_failed_run_still_reports(airflow_db, tmp_path):
    """A missing model version is a configuration error: extract_data fails on its first try (no
    retry, no backoff), naming where the value came from, and the failed run publishes its summary
    and report as latest, replacing the older run's."""
    settings = platform_settings(tmp_path)
    store = open_object_store(settings)
    for name, data in list(unknown_layout_documents().items())[:2]:
        store.put_bytes(f"landing/{name}", data)
    reports = settings.prefixes.reports
    store.put_bytes(f"{reports}/latest/run_summary.json", json.dumps({"run_id": "an_older_run"}).encode())

    summary = dags_test(settings, env={"MLOPS_EXTRACT__MODEL_VERSION": "v404"}, state="failed")

    _, tasks = last_run_states()
    assert tasks["extract_data"] == ("failed", 1), tasks
    assert tasks["generate_reports"][0] == tasks[GATE][0] == "upstream_failed", tasks
    assert summary["run_id"] != "an_older_run" and summary["status"] == "failed"
    assert summary["error"]["task"] == "extract_data"
    message = summary["error"]["message"]
    assert "configuration error (not retried): extract.model_version: no trained extractor" in message
    assert "extract.model_version from environment variable MLOPS_EXTRACT__MODEL_VERSION" in message
    assert summary["documents"]["accepted"] == 2  # what the stages before it did
    report = store.get_bytes(f"{reports}/{summary['run_id']}/report.html").decode()
    assert "task extract_data failed" in report
    metadata = MetadataStore.from_settings(settings)
    assert [event["event"] for event in metadata.events(summary["run_id"]) if event["event"].startswith("task_")] == [
        "task_failed"
    ]
    assert metadata.get_run(summary["run_id"])["status"] == FINAL_STATUS["failed"]
