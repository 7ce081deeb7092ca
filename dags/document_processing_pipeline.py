"""
### Loan document processing pipeline

Turns new student-loan documents in the landing area (text PDFs, scanned PDFs, JPEG, PNG,
TIFF) into validated structured data, once a day or when triggered:

`acquire_documents` → `validate_documents` → `preprocess_documents` → `extract_data` (one
mapped task per batch of documents) → `validate_extraction` (Great Expectations gate) →
`detect_anomalies` → `check_bias` (fairlearn) → `store_results` → `generate_reports`.

Then `quality_gate` turns the run's verdict into the run's state: **failed** when the verdict
is FAILED (setting `gate.fail_run_on`: failed | warning | never), **skipped** on a WARNING, so
the run's colour tells the truth. Its log line says why and where the report is.

**Params** (trigger form, checked before the run starts): `landing_prefix` (empty: the
configured one; a relative prefix without `..`), `max_documents` (0 = all), `reprocess`.

**Outputs**: the run's **Report** tab (Browse → *Latest report* for the newest run) shows
`reports/<run_id>/report.html`; it and `run_summary.json` are in the object store
(`reports/latest/` is the newest, failed runs included); quarantined documents under
`quarantine/<sha256>/` next to `reason.json`. Bad documents never fail a run; a failed task is
an infrastructure fault, retried with exponential backoff, except configuration errors, which
fail at once naming where the value came from. Every task is idempotent for its run, so *Clear*
re-runs it safely. Stage logic lives in the `mlops` package; this file only wires it.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, chain, dag, task

STAGE_DOCS = {
    "acquire_documents": "Copy new landing objects once into content-addressed raw storage; skip what earlier runs finished.",
    "validate_documents": "Magic bytes vs extension, size, encryption, page and pixel limits, in sandboxed workers; quarantine the bad.",
    "preprocess_documents": "Pages, DPI, clarity, text layer, perceptual-hash re-scan detection; returns the extraction batches.",
    "extract_data": "Text layer or Tesseract OCR, field parsing and document-type classification for one batch.",
    "validate_extraction": "Great Expectations suite on the extracted table: score and PASSED/WARNING/FAILED gate, Data Docs.",
    "detect_anomalies": "Rule checks from config/anomaly_rules.yaml and a robust z-score against history.",
    "check_bias": "fairlearn MetricFrame: quality disparities by document type, servicer, format, pages, scan quality.",
    "store_results": "Extractions, findings and metrics into the metadata store; mark documents processed.",
    "generate_reports": "run_summary.json and report.html under reports/<run_id>/ and reports/latest/.",
}
# Relative segments of letters, digits, . _ -; none starting with a dot, no "..": not "/" or "../x".
LANDING_PREFIX_PATTERN = r"^(?!.*\.\.)[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*/?$"


def _record_failure(context):
    from mlops.orchestration import record_task_failure

    record_task_failure(context)


def _record_retry(context):
    from mlops.orchestration import record_task_retry

    record_task_retry(context)


@task(
    task_id="quality_gate",
    retries=0,
    on_failure_callback=None,  # the report is written already: a failed gate is not a failed task
    on_retry_callback=None,
    doc_md="Fails the run on a FAILED verdict (gate.fail_run_on), skipped on a WARNING; logs why.",
)
def quality_gate(outcome: dict):
    from mlops.orchestration import enforce_verdict

    enforce_verdict(outcome)


def _stage_task(stage: str, **task_options):
    def run_stage(batch: int | None = None, **context):
        from mlops.orchestration import run_task

        return run_task(stage, context, batch=batch)

    return task(run_stage, task_id=stage, doc_md=STAGE_DOCS[stage], **task_options)


@dag(
    dag_id="document_processing_pipeline",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["loan-documents", "mlops"],
    default_args={
        "owner": "mlops",
        "retries": 3,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=15),
        "execution_timeout": timedelta(hours=2),
        "on_failure_callback": _record_failure,
        "on_retry_callback": _record_retry,
    },
    params={
        "landing_prefix": Param(
            None,
            type=["null", "string"],
            pattern=LANDING_PREFIX_PATTERN,
            maxLength=256,
            description="Object-store prefix to take documents from, e.g. landing/2026-01 (empty: prefixes.landing).",
        ),
        "max_documents": Param(0, type="integer", minimum=0, description="Take at most this many new documents (0 = all)."),
        "reprocess": Param(False, type="boolean", description="Process documents again even if this pipeline version did."),
    },
)
def document_processing_pipeline():
    batches = _stage_task("preprocess_documents")()
    reports = _stage_task("generate_reports")()
    chain(
        _stage_task("acquire_documents")(),
        _stage_task("validate_documents")(),
        batches,
        _stage_task("extract_data", execution_timeout=timedelta(hours=4)).expand(batch=batches),
        _stage_task("validate_extraction")(),
        _stage_task("detect_anomalies")(),
        _stage_task("check_bias")(),
        _stage_task("store_results")(),
        reports,
    )
    quality_gate(reports)


document_processing_pipeline()
