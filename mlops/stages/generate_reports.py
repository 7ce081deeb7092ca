"""generate_reports: ``run_summary.json`` and ``report.html`` under ``reports/<run_id>/``, copied
to ``reports/latest/``; the run is closed in the metadata store with its status and counts, then
the alert rules are evaluated on the summary and what fires is sent (:mod:`mlops.alerts`); last,
the cross-run dashboard ``reports/dashboard.html`` is regenerated (:mod:`mlops.monitoring.dashboard`).

A run that stops on a failed task is published too (:func:`publish_failure`, called by the
runners), so ``reports/latest/`` never keeps showing an older run."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from mlops.alerts import send_run_alerts
from mlops.errors import DatasetNotFound, ObjectNotFound, RunSuperseded
from mlops.monitoring.dashboard import DASHBOARD, write_dashboard
from mlops.recovery import mark_reported
from mlops.reporting import PLOTLY_ASSET, plotly_asset, render_html, summary_problems
from mlops.run_data import file_names
from mlops.run_summary import build_summary, quarantine_events
from mlops.stages import StageContext

STAGE = "generate_reports"
FINAL_STATUS = {"success": "success", "warning": "partial", "failed": "failed"}
MAX_FINDINGS_SHOWN = 500
log = logging.getLogger(__name__)


def run(ctx: StageContext) -> dict[str, Any]:
    return publish(ctx, build_summary(ctx))


def publish_failure(ctx: StageContext, task: str, message: str) -> dict[str, Any]:
    """Publish the summary and report of a run that stopped because ``task`` failed. Not for a
    run another has taken over (e.g. Airflow's failure callback for a killed task coming late):
    that run's report shows its documents already."""
    if later := ctx.metadata.superseded_by(ctx.run_id):
        raise RunSuperseded(f"run {ctx.run_id!r} stopped and run {later!r} took over its documents: "
                            f"the report of {later!r} shows them, nothing published for {ctx.run_id!r}", run_id=later)  # fmt: skip
    if ctx.metadata.get_run(ctx.run_id) is None:
        ctx.metadata.start_run(ctx.run_id, ctx.settings.fingerprint(), ctx.settings.pipeline_version)
    return publish(ctx, build_summary(ctx, error={"task": task, "message": message}))


def publish(ctx: StageContext, summary: dict[str, Any]) -> dict[str, Any]:
    """Write the run's summary and report under its run id, and as ``latest`` unless a run that
    started later has published there (rebuilding an older run's report); close the run."""
    problems = summary_problems(summary)
    if problems:
        raise ValueError(f"run_summary.json of run {ctx.run_id} is malformed: {'; '.join(problems)}")
    reports = ctx.settings.prefixes.reports
    if not ctx.store.exists(f"{reports}/{PLOTLY_ASSET}"):
        ctx.store.put_bytes(f"{reports}/{PLOTLY_ASSET}", plotly_asset(), content_type="text/javascript")
    details = report_details(ctx)
    details["quarantined"] += [
        {**row, "detail": f"decided by run {run['run_id']} ({run['outcome']}): {row['detail']}"}
        for run in summary.get("taken_over") or [] for row in run["quarantined_files"]
    ]  # fmt: skip
    html = render_html(summary, details, plotly_src=f"../{PLOTLY_ASSET}")
    body = json.dumps(summary, indent=2, default=str).encode()
    mark_reported(ctx, STAGE, summary.get("taken_over") or [])
    for folder in (ctx.run_id, "latest") if _newest_in_latest(ctx, summary) else (ctx.run_id,):
        ctx.store.put_bytes(f"{reports}/{folder}/run_summary.json", body, content_type="application/json")
        ctx.store.put_bytes(f"{reports}/{folder}/report.html", html.encode(), content_type="text/html")
    ctx.metadata.finish_run(
        ctx.run_id, FINAL_STATUS[summary["status"]], summary["documents"], outcome=summary.get("outcome", "completed"),
        verdict=summary.get("verdict"), reason="; ".join(summary["status_reasons"]) if summary.get("error") else None,
    )  # fmt: skip
    outcome = {
        "run_id": ctx.run_id,
        "status": summary["status"],
        "status_reasons": summary["status_reasons"],
        "summary": ctx.store.uri(f"{reports}/{ctx.run_id}/run_summary.json"),
        "report": ctx.store.uri(f"{reports}/{ctx.run_id}/report.html"),
        "links": ctx.links,
    }
    data_docs = (summary.get("validation") or {}).get("data_docs")
    links = {"report": outcome["report"]} | ({"data_docs": data_docs} if data_docs else {}) | ctx.links
    send_run_alerts(ctx, summary, links)
    try:
        outcome["dashboard"] = write_dashboard(ctx.store, ctx.metadata, ctx.settings)["dashboard"]
    except Exception:  # the dashboard is a view over many runs: never worth failing this one
        log.exception("reports/%s not regenerated; `python -m mlops dashboard` retries", DASHBOARD)
    return outcome


def _newest_in_latest(ctx: StageContext, summary: dict[str, Any]) -> bool:
    """Whether no run that started after this one has published ``latest``."""
    try:
        latest = json.loads(ctx.store.get_bytes(f"{ctx.settings.prefixes.reports}/latest/run_summary.json"))
        started = datetime.fromisoformat(latest["started_at"])
        return latest["run_id"] == ctx.run_id or started <= datetime.fromisoformat(summary["started_at"])
    except (ObjectNotFound, ValueError, KeyError, TypeError):
        return True  # nothing readable there to keep


def report_details(ctx: StageContext) -> dict[str, Any]:
    """The tables behind the report's charts: failing expectations, findings, bias flags, quarantine."""
    details: dict[str, Any] = {
        "quarantined": [
            {"filename": event.get("key", "").rsplit("/", 1)[-1], "reason": event["reason"], "detail": event["detail"]}
            for event in quarantine_events(ctx).values()
        ],
        "files": file_names(ctx),
    }
    try:
        validation = ctx.catalog.load_json("validate_extraction/result")
        details["failing_expectations"] = [
            outcome for outcome in validation["expectations"] if not outcome["success"]
        ]
        details["failing_rows"] = validation.get("failing_rows") or {}
        details["findings"] = ctx.catalog.load_records("detect_anomalies/findings")[:MAX_FINDINGS_SHOWN]
        bias = ctx.catalog.load_json("check_bias/result")
        details["bias_flags"] = bias["flags"]
        details["bias_thresholds"] = bias["thresholds"]
        details["bias_dimensions"] = bias.get("dimensions") or {}
    except DatasetNotFound:
        pass  # an earlier stage did not run: the report shows those sections as "not run"
    return details
