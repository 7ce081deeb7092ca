"""What the ``data_quality_monitoring`` DAG and ``python -m mlops monitor`` check across runs:

- ``landing``: freshness of the landing area, the age of its newest object (names matching
  ``landing_ignore`` left out): a landing area that stopped receiving documents;
- ``results``: freshness of processed results, hours since the newest completed run finished;
- ``drift``: the drift verdict of the newest completed run with field statistics against its
  baseline (:func:`mlops.monitoring.drift.drift_for_run`);
- ``anomaly_trend``: over the last ``monitoring.trend_runs`` completed runs, the share of each
  run's documents with at least one anomaly finding, and its slope.

All but the landing listing read the metadata store, and nothing takes the run lease: monitoring
runs beside a pipeline run. :func:`publish` turns the checks into a verdict (ALERT when a
monitoring rule of ``config/alert_rules.yaml`` fires, else OK), sends the alerts, each rule at most
once per channel and monitoring window (``monitoring.alert_window_hours``; the audit events of the
deliveries are filed under the window's id), and writes ``reports/monitoring/<time>.json`` and
``reports/monitoring/latest.json``. The time is the runner's (the Airflow run's ``run_after``).
:func:`refresh_dashboard` then regenerates ``reports/dashboard.html``, ALERT or not.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa

from mlops.config import Settings, get_settings
from mlops.io.metadata import ExtractionResult, FindingRow, MetadataStore
from mlops.io.objects import ObjectStore, open_object_store
from mlops.models import RunOutcome
from mlops.monitoring.drift import DRIFT, drift_for_run, publish_drift

OK = "OK"
ALERT = "ALERT"
REPORT_FOLDER = "monitoring"
CHECK_NAMES = ("landing", "results", "drift", "anomaly_trend")


def landing_freshness(store: ObjectStore, settings: Settings, now: datetime) -> dict[str, Any]:
    """How many objects the landing area holds and how old the newest is (no names: a file name
    can be a borrower's)."""
    newest: datetime | None = None
    objects = 0
    for entry in store.list(settings.prefixes.landing, remember_etags=True):
        if any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in settings.landing_ignore):
            continue
        objects += 1
        newest = entry.last_modified if newest is None else max(newest, entry.last_modified)
    return {"objects": objects, "newest_at": _iso(newest), "hours": _hours(newest, now)}


def results_freshness(metadata: MetadataStore, now: datetime) -> dict[str, Any]:
    finished = [run for run in metadata.runs(RunOutcome.COMPLETED) if run["finished_at"]]
    newest = max(finished, key=lambda run: run["finished_at"], default=None)
    if newest is None:
        return {"run_id": None, "finished_at": None, "hours": None}
    return {"run_id": newest["run_id"], "finished_at": _iso(newest["finished_at"]),
            "hours": _hours(newest["finished_at"], now)}  # fmt: skip


def latest_drift(metadata: MetadataStore, settings: Settings) -> dict[str, Any]:
    with_statistics = metadata.runs_with_field_statistics()
    candidates = [run["run_id"] for run in metadata.runs(RunOutcome.COMPLETED) if run["run_id"] in with_statistics]
    if not candidates:
        return {"run_id": None, "verdict": None, "headline": "no completed run has field statistics yet",
                "drifted_fields": []}  # fmt: skip
    report = drift_for_run(metadata, candidates[-1], settings.monitoring)
    publish_drift(open_object_store(settings), settings.prefixes.reports, report)  # the dashboard charts it
    return {"run_id": report.run_id, "verdict": report.verdict, "headline": report.headline(),
            "drifted_fields": [check.field for check in report.worst_per_field()]}  # fmt: skip


def anomaly_trend(metadata: MetadataStore, runs: int) -> dict[str, Any]:
    """Per run (oldest first): documents extracted, those with a finding, and their share."""
    recent = [run["run_id"] for run in metadata.runs(RunOutcome.COMPLETED)][-runs:]
    documents = _count_per_run(metadata, ExtractionResult, recent)
    flagged = _count_per_run(metadata, FindingRow, recent)
    series = [{"run_id": run_id, "documents": documents.get(run_id, 0), "with_findings": flagged.get(run_id, 0),
               "rate": round(flagged.get(run_id, 0) / documents[run_id], 4) if documents.get(run_id) else None}
              for run_id in recent]  # fmt: skip
    rates = [point["rate"] for point in series if point["rate"] is not None]
    slope = float(np.polyfit(range(len(rates)), rates, 1)[0]) if len(rates) >= 2 else None
    return {"runs": series, "latest": rates[-1] if rates else None, "earlier": rates[:-1],
            "slope_per_run": None if slope is None else round(slope, 4)}  # fmt: skip


def _count_per_run(metadata: MetadataStore, model: Any, run_ids: list[str]) -> dict[str, int]:
    """Distinct documents of ``model``'s table per run."""
    if not run_ids:
        return {}
    query = (
        sa.select(model.run_id, sa.func.count(sa.distinct(model.sha256)))
        .where(model.run_id.in_(run_ids))
        .group_by(model.run_id)
    )
    with metadata.engine.connect() as conn:
        return {run_id: int(count) for run_id, count in conn.execute(query)}


def run_check(name: str, now: datetime, settings: Settings | None = None) -> dict[str, Any]:
    """One check by name (a task of the monitoring DAG); a JSON-ready dict."""
    settings = settings or get_settings()
    checks: dict[str, Callable[[], dict[str, Any]]] = {
        "landing": lambda: landing_freshness(open_object_store(settings), settings, now),
        "results": lambda: results_freshness(_metadata(settings), now),
        "drift": lambda: latest_drift(_metadata(settings), settings),
        "anomaly_trend": lambda: anomaly_trend(_metadata(settings), settings.monitoring.trend_runs),
    }
    return checks[name]()


def monitor(now: datetime | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Every check, then :func:`publish` and :func:`refresh_dashboard`: what ``python -m mlops
    monitor`` runs. A dashboard that cannot be built is logged; the verdict stands."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    report = publish({name: run_check(name, now, settings) for name in CHECK_NAMES}, now, settings)
    try:
        report["dashboard"] = refresh_dashboard(settings)["dashboard"]
    except Exception:
        logging.getLogger(__name__).exception("reports/dashboard.html not regenerated")
    return report


def refresh_dashboard(settings: Settings | None = None) -> dict[str, Any]:
    """Regenerate the cross-run dashboard (the monitoring DAG's ``refresh_dashboard`` task)."""
    from mlops.monitoring.dashboard import write_dashboard

    settings = settings or get_settings()
    return write_dashboard(open_object_store(settings), _metadata(settings), settings)


def publish(checks: dict[str, dict[str, Any]], now: datetime, settings: Settings | None = None) -> dict[str, Any]:
    """The verdict of ``checks``, its alerts sent, and the report written; returns the report."""
    from mlops.alerts import (
        MONITORING_RULES,
        MONITORING_STATUS,
        Rules,
        RunFacts,
        evaluate,
        load_rules,
        send_alerts,
    )
    from mlops.stages import StageContext

    settings = settings or get_settings()
    store, metadata = open_object_store(settings), _metadata(settings)
    folder = f"{settings.prefixes.reports}/{REPORT_FOLDER}"
    key = f"{folder}/{now:%Y%m%dT%H%M%SZ}.json"
    window = window_id(now, settings.monitoring.alert_window_hours)
    config = load_rules(settings.alerts.rules_file)
    rules = Rules.model_validate({name: getattr(config.rules, name) for name in MONITORING_RULES})
    landing, results, drift, trend = (checks[name] for name in CHECK_NAMES)
    facts = RunFacts(run_id=window, status=MONITORING_STATUS, verdict="", failed_task=None, documents={},
                     quarantine_rate=None, missing_field_rate=None, checked_documents=0, metric_values={},
                     metric_history={}, processing_seconds=None, hours_since_new_document=landing["hours"],
                     links={"report": store.uri(key)}, hours_since_completed_run=results["hours"],
                     drift_headline=drift["headline"] if drift["verdict"] == DRIFT else None,
                     anomaly_rate=trend["latest"], anomaly_rate_history=trend["earlier"])  # fmt: skip
    alerts = evaluate(rules, facts)
    verdict = ALERT if alerts else OK
    line = f"{verdict}: " + ("; ".join(alert.reason for alert in alerts) if alerts else status_sentence(checks))
    deliveries = send_alerts(StageContext(window, settings, store, metadata), config, alerts, replace(facts, verdict=line))
    report = {
        "checked_at": _iso(now), "verdict": verdict, "verdict_line": line, "window": window,
        **checks,
        "alerts": [{"rule": alert.rule, "severity": alert.severity, "reason": alert.reason} for alert in alerts],
        "deliveries": deliveries, "report": store.uri(key),
    }  # fmt: skip
    body = json.dumps(report, indent=2, default=str).encode()
    store.put_bytes(key, body, content_type="application/json")
    store.put_bytes(f"{folder}/latest.json", body, content_type="application/json")
    return report


def status_sentence(checks: dict[str, dict[str, Any]]) -> str:
    """What the checks found, in one line, when no rule fired."""
    landing, results, drift, trend = (checks[name] for name in CHECK_NAMES)
    parts = [
        "landing area empty" if landing["hours"] is None else f"newest landing object {landing['hours']:.1f} h old",
        "no completed run yet" if results["hours"] is None else f"newest run completed {results['hours']:.1f} h ago",
        drift["headline"],
    ]
    if trend["latest"] is not None:
        parts.append(f"{trend['latest']:.0%} of the newest run's documents have anomaly findings")
    return "; ".join(parts)


def window_id(now: datetime, hours: float) -> str:
    """The monitoring window ``now`` falls in, named by its start: alerts are deduplicated per window."""
    seconds = hours * 3600
    start = datetime.fromtimestamp(now.timestamp() // seconds * seconds, UTC)
    return f"monitoring__{start:%Y%m%dT%H%MZ}"


def _metadata(settings: Settings) -> MetadataStore:
    metadata = MetadataStore.from_settings(settings)
    metadata.migrate()
    return metadata


def _hours(then: datetime | None, now: datetime) -> float | None:
    return None if then is None else round(max(0.0, (now - then).total_seconds() / 3600), 2)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
