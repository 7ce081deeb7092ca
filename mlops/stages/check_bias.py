"""check_bias: is extraction equally good for every kind of document?

Slices: document type, servicer, file format, page-count bucket and scan-quality bucket.
Metrics per document: field completeness (against the label's fields, else the fields its
document type carries), mean field confidence, validation pass, and field accuracy where
ground-truth labels exist (``labels_key`` in the object store; the sample corpus ships them).
fairlearn's MetricFrame compares the groups (mlops.quality.bias). The same labels give the
run's extraction accuracy per field, text layer vs OCR.

Labels the pipeline cannot read (another format, broken lines, an empty file) never fail the
run: one warning names the key and what was wrong, and accuracy is measured on the usable rows,
or skipped when there are none (the result says why under ``accuracy_skipped``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from mlops.errors import ObjectNotFound
from mlops.extraction.evaluation import accuracy_by_group, field_matches, parse_labels
from mlops.models import FIELD_NAMES, REQUIRED_FIELDS
from mlops.quality.bias import BiasThresholds, check_bias, page_bucket, scan_quality_bucket
from mlops.run_data import extractions
from mlops.stages import StageContext

STAGE = "check_bias"
PROBLEMS_SHOWN = 3
log = logging.getLogger(__name__)


def load_labels(ctx: StageContext) -> tuple[list[dict[str, Any]], str | None]:
    """Usable ground-truth rows (labels.jsonl), and why accuracy is skipped when there are none.

    No labels key or no file is the ordinary unlabelled run: nothing to warn about. Unusable
    rows are warned about once, here, for the whole file."""
    key = ctx.settings.labels_key
    if not key:
        return [], "no labels key configured"
    try:
        body = ctx.store.get_bytes(key)
    except ObjectNotFound:
        return [], f"no labels at {ctx.store.uri(key)}"
    rows, problems = parse_labels(body)
    if not problems:
        return rows, None
    shown = "; ".join(problems[:PROBLEMS_SHOWN]) + (" ..." if len(problems) > PROBLEMS_SHOWN else "")
    outcome = f"accuracy measured on the {len(rows)} usable rows" if rows else "field accuracy skipped"
    log.warning("labels %s are not in the labels.jsonl format this pipeline reads (%d unusable rows: %s); %s",
                ctx.store.uri(key), len(problems), shown, outcome)
    return rows, None if rows else f"labels at {ctx.store.uri(key)} unusable: {shown}"


def bias_frame(extracted: pd.DataFrame, measured: pd.DataFrame, row_pass: dict[str, bool],
               labels: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per document: the slice columns and the per-document quality metrics;
    ``field_accuracy`` only when there are labels (NaN for a document without one)."""
    measured = measured.set_index("sha256")
    rows = []
    for row in extracted.to_dict("records"):
        sha256 = row["sha256"]
        truth = (labels.get(sha256) or {}).get("fields") or {}
        expected = [name for name in FIELD_NAMES if name in truth] or list(
            REQUIRED_FIELDS.get(row.get("doc_type"), FIELD_NAMES)
        )
        present = [name for name in expected if not pd.isna(row.get(name))]
        document = {
            "sha256": sha256,
            "doc_type": row.get("doc_type") or "unknown",
            "servicer": row.get("servicer") or "unknown",
            "format": measured.at[sha256, "format"],
            "page_bucket": page_bucket(measured.at[sha256, "pages"]),
            "scan_quality": scan_quality_bucket(bool(measured.at[sha256, "has_text_layer"]),
                                                measured.at[sha256, "clarity"]),
            "completeness": len(present) / len(expected),
            "mean_confidence": float(np.mean([row[f"{name}_confidence"] for name in present])) if present else np.nan,
            "validation_pass": float(row_pass.get(sha256, True)),
        }
        if labels:
            matches = field_matches(row, truth)
            document["field_accuracy"] = sum(matches.values()) / len(matches) if matches else np.nan
        rows.append(document)
    return pd.DataFrame(rows)


def run(ctx: StageContext) -> dict[str, Any]:
    extracted = extractions(ctx)
    labels, accuracy_skipped = load_labels(ctx)
    if extracted.empty:
        frame = pd.DataFrame()
    else:
        row_pass = ctx.catalog.load_json("validate_extraction/result")["row_pass"]
        measured = ctx.catalog.load_table("preprocess_documents/documents")
        frame = bias_frame(extracted, measured, row_pass, {label["sha256"]: label for label in labels})
    settings = ctx.settings.bias
    result = check_bias(frame, thresholds=BiasThresholds(
        max_difference=settings.max_difference, min_ratio=settings.min_ratio, min_group_size=settings.min_group_size,
    ))
    ctx.catalog.save_json(f"{STAGE}/result", result.summary() | {"accuracy_skipped": accuracy_skipped})
    if not frame.empty:
        ctx.catalog.save_table(f"{STAGE}/documents", frame)
    accuracy = accuracy_by_group(extracted, labels, "text_source") if labels and not extracted.empty else None
    ctx.catalog.save_json(f"{STAGE}/accuracy", accuracy)
    for flag in result.flags:
        ctx.audit(STAGE, "disparity", sentence=flag)
    if result.flags:
        log.warning("%d disparities between groups, first: %s", len(result.flags), "; ".join(result.flags[:3]))
    return {"passed": result.passed, "flags": len(result.flags), "max_disparity": result.max_disparity,
            "field_accuracy": accuracy["field_accuracy"] if accuracy else None,
            "accuracy_skipped": accuracy_skipped}
