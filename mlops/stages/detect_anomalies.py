"""detect_anomalies: rule-based checks from config/anomaly_rules.yaml, a robust z-score against
the field values of earlier runs in the metadata store, and an IsolationForest over the numeric
fields together fitted on those earlier runs and this one. The forest and its training window are kept under
the run's catalog (``detect_anomalies/isolation_forest.joblib`` and ``.json``) and named in the
stage summary, so a finding can be traced to the model that made it."""

from __future__ import annotations

import io
import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import joblib

from mlops.models import NUMERIC_FIELDS
from mlops.quality.anomalies import IsolationForestDetector, detect_anomalies, load_rules
from mlops.run_data import extractions, file_names
from mlops.stages import StageContext

STAGE = "detect_anomalies"
NAMED_IN_LOG = 5
log = logging.getLogger(__name__)


def run(ctx: StageContext) -> dict[str, Any]:
    rules = load_rules(ctx.settings.anomalies.rules_file)
    history = ctx.metadata.field_history(NUMERIC_FIELDS, exclude_run_id=ctx.run_id, run_ids=True)
    frame = extractions(ctx)
    forest = IsolationForestDetector(ctx.settings.anomalies.isolation_forest)
    findings = detect_anomalies(frame, history, rules, as_of=ctx.run_date) + forest.detect(frame, history)
    ctx.catalog.save_table(f"{STAGE}/findings", findings)
    window = record_forest(ctx, forest)
    for finding in findings:
        ctx.audit(
            STAGE,
            "anomaly",
            sha256=finding.sha256,
            field=finding.field,
            detector=finding.detector,
            severity=finding.severity,
            reason=finding.reason,
        )
    if findings:
        files = file_names(ctx)
        named = "; ".join(
            f"{files.get(f.sha256, f.sha256[:12])}: {f.reason}" for f in findings[:NAMED_IN_LOG]
        )
        more = f" and {len(findings) - NAMED_IN_LOG} more" if len(findings) > NAMED_IN_LOG else ""
        log.warning("%d anomalies: %s%s", len(findings), named, more)
    return {
        "count": len(findings),
        "by_detector": dict(Counter(finding.detector for finding in findings)),
        "isolation_forest": window,
    }


def record_forest(ctx: StageContext, forest: IsolationForestDetector) -> dict[str, Any]:
    """Save the fitted forest and its training window in the run's catalog and the audit log;
    return the window as the stage summary names it (run ids counted, not listed)."""
    window = dict(forest.window)
    if forest.model is None:
        log.info("isolation forest skipped: %s", window["skipped"])
        ctx.audit(
            STAGE, "isolation_forest_skipped", reason=window["skipped"], history_rows=window["history_rows"]
        )
        return window
    buffer = io.BytesIO()
    joblib.dump(forest.model, buffer)
    model_key = ctx.catalog.key(f"{STAGE}/isolation_forest", "joblib")
    ctx.store.put_bytes(model_key, buffer.getvalue(), content_type="application/octet-stream")
    window |= {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": ctx.store.uri(model_key),
    }
    window["window"] = ctx.store.uri(ctx.catalog.save_json(f"{STAGE}/isolation_forest", window))
    ctx.audit(STAGE, "isolation_forest_trained", **{k: v for k, v in window.items() if k != "run_ids"},
              runs=len(window["run_ids"]))  # fmt: skip
    return {k: v for k, v in window.items() if k != "run_ids"} | {"runs": len(window["run_ids"])}
