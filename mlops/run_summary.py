"""What a run did, assembled from its catalog datasets and its audit events: the content of
run_summary.json, the run's metrics, and the tables the HTML report shows."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlops.errors import DatasetNotFound
from mlops.recovery import taken_over, taken_over_sentence

if TYPE_CHECKING:
    from mlops.stages import StageContext

RUN_STATUS = {"PASSED": "success", "WARNING": "warning", "FAILED": "failed"}
VERDICT = {"success": "passed", "warning": "warning", "failed": "failed"}  # status -> RunVerdict
SEVERITY = ("success", "warning", "failed")  # a run's status, from best to worst
MAX_CRITICAL_NAMED = 3


def _optional_json(ctx: StageContext, name: str) -> Any:
    try:
        return ctx.catalog.load_json(name)
    except DatasetNotFound:
        return None


def _optional_parts(ctx: StageContext, name: str) -> pd.DataFrame:
    try:
        return ctx.catalog.load_parts(name)
    except DatasetNotFound:
        return pd.DataFrame()


def document_counts(ctx: StageContext) -> dict[str, int]:
    """seen = new + skipped; new = accepted + quarantined + duplicates. Refused and ignored
    landing entries are not documents and counted apart."""
    acquired = _optional_json(ctx, "acquire_documents/summary") or {}
    quarantined = len(quarantine_events(ctx))
    new = acquired.get("new", 0)
    duplicates = acquired.get("duplicates", 0)
    return {
        "seen": acquired.get("seen", 0),
        "new": new,
        "skipped": acquired.get("skipped", 0),
        "accepted": new - quarantined - duplicates,
        "quarantined": quarantined,
        "duplicates": duplicates,
        "refused": acquired.get("refused", 0),  # landing entries never read (not regular files, ...)
        "ignored": acquired.get("ignored", 0),  # landing names matching landing_ignore
    }


def quarantine_events(ctx: StageContext) -> dict[str, dict[str, Any]]:
    """The run's quarantine decisions, one per document (a retried task may repeat its event)."""
    return {
        event["sha256"]: event["details"]
        for event in ctx.metadata.events(ctx.run_id)
        if event["event"] == "quarantined"
    }


def stage_seconds(ctx: StageContext) -> dict[str, float]:
    """Seconds per stage; mapped batches add up, a retried stage counts its last attempt."""
    last: dict[tuple[str, Any], float] = {}
    for event in ctx.metadata.events(ctx.run_id):
        if event["event"] == "stage_finished":
            last[(event["stage"], event["details"].get("batch"))] = event["details"]["seconds"]
    totals: Counter[str] = Counter()
    for (stage, _), seconds in last.items():
        totals[stage] += seconds
    return {stage: round(seconds, 3) for stage, seconds in totals.items()}


def verdict(
    documents: dict[str, int], validation: dict[str, Any] | None, landing_prefix: str
) -> tuple[str, list[str]]:
    """The run's status (success / warning / failed) and the sentences that explain it. A gate
    over no rows proves nothing, so it does not count; finding no documents at all is a WARNING
    (a mistyped landing prefix looks exactly like that), as is quarantining every new one."""
    findings: list[tuple[str, str]] = []
    if documents["seen"] == 0:
        findings.append(("warning", f"no documents found under landing prefix {landing_prefix!r}"))
    elif documents["new"] == 0:
        findings.append(("success", f"no new documents: all {documents['seen']} were processed by earlier runs"))
    elif documents["accepted"] <= 0 and documents["quarantined"]:
        findings.append(("warning", f"all {documents['quarantined']} new documents were quarantined"))
    if validation and validation.get("rows"):
        findings.append((RUN_STATUS[validation["status"]], _gate_sentence(validation)))
    status = max((status for status, _ in findings), key=SEVERITY.index, default="success")
    return status, [reason for _, reason in findings]


def _gate_sentence(validation: dict[str, Any]) -> str:
    thresholds = validation["thresholds"]
    sentence = (
        f"quality gate {validation['status']}: score {validation['score']:.2f} over {validation['rows']} documents "
        f"(PASSED from {thresholds['passed']:g}, WARNING from {thresholds['warning']:g})"
    )
    critical = validation.get("critical_failures") or []
    if critical:
        more = f" and {len(critical) - MAX_CRITICAL_NAMED} more" if len(critical) > MAX_CRITICAL_NAMED else ""
        sentence += f"; critical expectations failed: {'; '.join(critical[:MAX_CRITICAL_NAMED])}{more}"
    return sentence


def fails_run(status: str, fail_run_on: str) -> bool:
    """Whether a run of this status fails its runner under the ``gate.fail_run_on`` setting."""
    return fail_run_on != "never" and SEVERITY.index(status) >= SEVERITY.index(fail_run_on)


def verdict_line(outcome: dict[str, Any]) -> str:
    """One line for logs, the CLI and the Airflow task: ``FAILED run <id>: <reasons>``."""
    reasons = "; ".join(outcome.get("status_reasons") or []) or "every check passed"
    return f"{outcome['status'].upper()} run {outcome['run_id']}: {reasons}"


def build_summary(ctx: StageContext, error: dict[str, str] | None = None) -> dict[str, Any]:
    """``error`` ({"task": ..., "message": ...}): the run stopped there; its status is failed, its
    outcome ``error`` with no verdict, and the summary holds what the stages before it produced.
    Otherwise the outcome is ``completed`` and ``verdict`` the status as passed/warning/failed."""
    validation = _optional_json(ctx, "validate_extraction/result")
    bias = _optional_json(ctx, "check_bias/result")
    accuracy = _optional_json(ctx, "check_bias/accuracy")
    anomalies = _optional_json(ctx, "detect_anomalies/summary")
    extracted = _optional_parts(ctx, "extract_data")
    run = ctx.metadata.get_run(ctx.run_id) or {}
    documents = document_counts(ctx)
    status, reasons = verdict(documents, validation, ctx.settings.prefixes.landing)
    if error:
        status, reasons = "failed", [f"task {error['task']} failed: {error['message']}", *reasons]
    taken = taken_over(ctx)
    reasons += [taken_over_sentence(run) for run in taken]
    return {
        "run_id": ctx.run_id,
        "status": status,
        "status_reasons": reasons,
        "outcome": "error" if error else "completed",
        "verdict": None if error else VERDICT[status],
        "error": error,
        "started_at": (run.get("started_at") or datetime.now(UTC)).isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "pipeline_version": ctx.settings.pipeline_version,
        "settings_fingerprint": ctx.settings.fingerprint(),
        "landing_prefix": ctx.settings.prefixes.landing,
        "links": ctx.links,
        "documents": documents,
        "quarantine_reasons": dict(Counter(event["reason"] for event in quarantine_events(ctx).values())),
        "extraction": {
            "documents": len(extracted),
            "text_layer_pages": int(extracted["text_layer_pages"].sum()) if len(extracted) else 0,
            "ocr_pages": int(extracted["ocr_pages"].sum()) if len(extracted) else 0,
            "accuracy": _accuracy_table(accuracy),
            "field_accuracy": accuracy["field_accuracy"] if accuracy else None,
            "doc_type_accuracy": accuracy["doc_type_accuracy"] if accuracy else None,
        },
        "validation": {
            "score": validation["score"],
            "status": validation["status"],
            "rows": validation.get("rows"),
            "thresholds": {"passed": validation["thresholds"]["passed"], "warning": validation["thresholds"]["warning"]},
            "data_docs": validation.get("data_docs"),
            "critical_failures": validation.get("critical_failures", []),
        } if validation else None,
        "anomalies": {"count": anomalies["count"], "by_detector": anomalies["by_detector"]} if anomalies else None,
        "bias": bias["max_disparity"] if bias else None,
        "bias_passed": bias["passed"] if bias else None,
        "stage_seconds": stage_seconds(ctx),
        "taken_over": taken,
    }


def _accuracy_table(accuracy: dict[str, Any] | None) -> dict[str, dict[str, float | None]] | None:
    """{field: {text_layer: x, ocr: y, all: z}} from accuracy_by_group(..., "text_source")."""
    if not accuracy:
        return None
    table: dict[str, dict[str, float | None]] = {}
    for field, value in accuracy["fields"].items():
        table[field] = {"all": value}
        for group, grouped in accuracy["by_group"].items():
            table[field][group] = grouped["fields"].get(field)
    return table


def metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Flat numeric metrics of a run, for the metadata store and DVC."""
    flat: dict[str, float] = {f"documents.{key}": value for key, value in summary["documents"].items()}
    if summary.get("validation"):
        flat["validation.score"] = summary["validation"]["score"]
    if summary.get("anomalies"):
        flat["anomalies.count"] = summary["anomalies"]["count"]
    extraction = summary["extraction"]
    for key in ("field_accuracy", "doc_type_accuracy"):
        if extraction.get(key) is not None:
            flat[f"extraction.{key}"] = extraction[key]
    for field, by_source in (extraction.get("accuracy") or {}).items():
        for source, value in by_source.items():
            if value is not None:
                flat[f"accuracy.{field}.{source}"] = value
    for dimension, disparity in (summary.get("bias") or {}).items():
        if disparity is not None:
            flat[f"bias.{dimension}"] = disparity
    return flat
