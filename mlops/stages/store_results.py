"""store_results: persist the run's results; safe to repeat.

Extractions (with their validation verdict), anomaly findings, run metrics and the per-field
statistics of the extracted table (what drift compares across runs) go into the metadata store
(upserts and per-run replaces, each in one transaction); the consolidated extractions table goes
to the run's prefix as Parquet. Finally the documents are marked processed by this pipeline
version, so later runs skip them.
"""

from __future__ import annotations

from typing import Any

from mlops.models import DocumentStatus, Finding
from mlops.monitoring.statistics import field_statistics
from mlops.run_data import extractions
from mlops.run_summary import build_summary, metrics
from mlops.stages import StageContext

STAGE = "store_results"


def run(ctx: StageContext) -> dict[str, Any]:
    extracted = extractions(ctx)
    row_pass = ctx.catalog.load_json("validate_extraction/result")["row_pass"]
    findings = [Finding(**row) for row in ctx.catalog.load_records("detect_anomalies/findings")]

    ctx.metadata.save_extractions(ctx.run_id, extracted.to_dict("records"), row_pass)
    ctx.metadata.replace_findings(ctx.run_id, findings)
    run_metrics = metrics(build_summary(ctx))
    ctx.metadata.save_metrics(ctx.run_id, run_metrics)
    monitoring = ctx.settings.monitoring
    statistics = field_statistics(extracted, categorical_fields=monitoring.categorical_fields,
                                  top_k=monitoring.top_k, bins=monitoring.histogram_bins)  # fmt: skip
    ctx.metadata.replace_field_statistics(ctx.run_id, statistics)
    if not extracted.empty:
        extracted = extracted.assign(validation_pass=extracted["sha256"].map(row_pass))
    key = ctx.catalog.save_table(f"{STAGE}/extractions", extracted)

    shas = extracted["sha256"].tolist() if not extracted.empty else []
    ctx.metadata.mark_processed(shas, ctx.settings.pipeline_version, ctx.run_id)
    for sha256 in shas:
        ctx.metadata.update_document(sha256, status=DocumentStatus.STORED)
    return {"extractions": len(shas), "findings": len(findings), "metrics": len(run_metrics),
            "field_statistics": len(statistics), "dataset": ctx.store.uri(key)}
