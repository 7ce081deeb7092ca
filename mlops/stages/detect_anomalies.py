"""detect_anomalies: rule-based checks from config/anomaly_rules.yaml and a robust z-score
against the field values of earlier runs in the metadata store."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from mlops.models import NUMERIC_FIELDS
from mlops.quality.anomalies import detect_anomalies, load_rules
from mlops.run_data import extractions, file_names
from mlops.stages import StageContext

STAGE = "detect_anomalies"
NAMED_IN_LOG = 5
log = logging.getLogger(__name__)


def run(ctx: StageContext) -> dict[str, Any]:
    rules = load_rules(ctx.settings.anomalies.rules_file)
    history = ctx.metadata.field_history(NUMERIC_FIELDS, exclude_run_id=ctx.run_id)
    findings = detect_anomalies(extractions(ctx), history, rules, as_of=ctx.run_date)
    ctx.catalog.save_table(f"{STAGE}/findings", findings)
    for finding in findings:
        ctx.audit(STAGE, "anomaly", sha256=finding.sha256, field=finding.field, detector=finding.detector,
                  severity=finding.severity, reason=finding.reason)
    if findings:
        files = file_names(ctx)
        named = "; ".join(f"{files.get(f.sha256, f.sha256[:12])}: {f.reason}" for f in findings[:NAMED_IN_LOG])
        more = f" and {len(findings) - NAMED_IN_LOG} more" if len(findings) > NAMED_IN_LOG else ""
        log.warning("%d anomalies: %s%s", len(findings), named, more)
    return {"count": len(findings), "by_detector": dict(Counter(finding.detector for finding in findings))}
