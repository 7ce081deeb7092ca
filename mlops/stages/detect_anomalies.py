"""detect_anomalies: rule-based checks from config/anomaly_rules.yaml and a robust z-score
against the field values of earlier runs in the metadata store."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mlops.models import NUMERIC_FIELDS
from mlops.quality.anomalies import detect_anomalies, load_rules
from mlops.stages import StageContext
from mlops.stages.validate_extraction import extractions

STAGE = "detect_anomalies"


def run(ctx: StageContext) -> dict[str, Any]:
    rules = load_rules(ctx.settings.anomalies.rules_file)
    history = ctx.metadata.field_history(NUMERIC_FIELDS, exclude_run_id=ctx.run_id)
    findings = detect_anomalies(extractions(ctx), history, rules, as_of=ctx.run_date)
    ctx.catalog.save_table(f"{STAGE}/findings", findings)
    for finding in findings:
        ctx.audit(STAGE, "anomaly", sha256=finding.sha256, field=finding.field, detector=finding.detector,
                  severity=finding.severity, reason=finding.reason)
    return {"count": len(findings), "by_detector": dict(Counter(finding.detector for finding in findings))}
