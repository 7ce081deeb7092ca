"""Bias over a window of runs: the ``bias_detection_pipeline`` DAG and ``python -m mlops bias-window``.

One run holds too few documents of most kinds to tell a real disparity from chance, so the window
pools the per-document table each run's ``check_bias`` stage saved (``runs/<run_id>/check_bias/
documents``: the slices doc_type, servicer, format, page_bucket and scan_quality of
:mod:`mlops.quality.bias`, and the metrics completeness, mean_confidence and, where labels
existed, field_accuracy) over the last ``bias.window_runs`` completed runs, or those started in
the last ``bias.window_days``. A document processed by several runs counts once (its newest row).

:func:`mlops.quality.bias.check_bias` gives each slice's mean and the disparity between slices of
at least ``bias.window_min_documents`` documents; smaller slices are reported as "not enough
evidence" and never flagged. A fairlearn ``MetricFrame`` with ``bias.bootstrap_samples`` bootstrap
resamples gives each slice's and the disparity's confidence interval (``bias.confidence_level``).
A disparity is flagged only when even its interval's favourable end breaches the thresholds (the
difference's lower bound above ``bias.max_difference``, or the ratio's upper bound below
``bias.min_ratio``), and the flagged slice (the worst one) gets a mitigation note.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame

from mlops.config import BiasSettings, Settings
from mlops.errors import DatasetNotFound
from mlops.io.catalog import Catalog
from mlops.io.metadata import MetadataStore
from mlops.io.objects import ObjectStore
from mlops.models import RunOutcome
from mlops.quality.bias import DIMENSIONS, UNKNOWN, BiasThresholds, _mean_ignoring_nan, check_bias

BIAS_TABLE = "check_bias/documents"
METRICS = ("field_accuracy", "completeness", "mean_confidence")
FLAGGED = "BIAS FLAGGED"
NOT_FLAGGED = "NO BIAS FLAGGED"
NO_DATA = "NO DATA"
NOT_ENOUGH_EVIDENCE = "not enough evidence"
MITIGATION = {
    "doc_type": "add {group} documents to the training corpus and retrain the extractor "
                "(python -m mlops train-extractor); review its field patterns for this type",
    "servicer": "collect {group} layouts (their labels and wordings) into the training corpus and "
                "retrain the extractor; check its field labels against the templates",
    "format": "check how {group} files are converted before extraction (preprocess_documents: "
              "pages, DPI, text layer); re-export the originals if they are lossy",
    "page_bucket": "documents of {group} pages: check fields found on later pages and retrain with "
                   "multi-page examples",
    "scan_quality": "re-scan the {group}-quality documents (300 DPI, flat, clean glass) and review "
                    "OCR preprocessing (deskew, denoise) for scans of this quality",
}  # fmt: skip


def window_run_ids(metadata: MetadataStore, settings: BiasSettings, now: datetime, runs: int | None = None) -> list[str]:
    """Completed runs in the window, oldest first: the last ``runs`` (default
    ``window_runs``), or, when ``window_days`` is set and ``runs`` is not, those started since."""
    completed = metadata.runs(RunOutcome.COMPLETED)
    if runs is None and settings.window_days:
        since = now - timedelta(days=settings.window_days)
        return [run["run_id"] for run in completed if run["started_at"] >= since]
    return [run["run_id"] for run in completed][-(runs or settings.window_runs) :]


def window_frame(store: ObjectStore, runs_prefix: str, run_ids: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The pooled per-document bias rows of ``run_ids``, and the runs that have none."""
    frames, missing = [], []
    for run_id in run_ids:
        try:
            frames.append(Catalog(store, runs_prefix, run_id).load_table(BIAS_TABLE).assign(run_id=run_id))
        except DatasetNotFound:
            missing.append(run_id)
    if not frames:
        return pd.DataFrame(), missing
    pooled = pd.concat(frames, ignore_index=True)
    return pooled.drop_duplicates("sha256", keep="last").reset_index(drop=True), missing


def assess(frame: pd.DataFrame, settings: BiasSettings) -> dict[str, Any]:
    """Every dimension and metric of ``frame``: slices with means, sizes and intervals, the
    disparity with its interval, and the flagged slices with their mitigation notes."""
    if frame.empty:
        return {"metrics": [], "dimensions": {}, "flagged": [], "not_enough_evidence": []}
    metrics = [m for m in METRICS if m in frame.columns and frame[m].notna().any()]
    thresholds = BiasThresholds(settings.max_difference, settings.min_ratio, settings.window_min_documents)
    result = check_bias(frame[[*DIMENSIONS, *metrics]], thresholds=thresholds)
    dimensions: dict[str, dict[str, Any]] = {}
    flagged: list[dict[str, Any]] = []
    for dimension, outcome in result.dimensions.items():
        groups = frame[dimension].astype("object").where(frame[dimension].notna(), UNKNOWN).astype(str)
        for metric, disparity in outcome.metrics.items():
            eligible = [group for group in disparity.group_sizes if group not in disparity.excluded_groups]
            interval = _bootstrap(frame[metric], groups, eligible, settings) if disparity.difference is not None else {}
            entry = {
                "slices": {group: {"mean": disparity.by_group[group], "documents": size,
                                   "interval": interval.get("by_group", {}).get(group),
                                   "evidence": "enough" if group in eligible else NOT_ENOUGH_EVIDENCE}
                           for group, size in disparity.group_sizes.items()},
                "difference": disparity.difference, "difference_interval": interval.get("difference"),
                "ratio": disparity.ratio, "ratio_interval": interval.get("ratio"),
            }  # fmt: skip
            entry["flagged"] = disparity.flagged and _breach_holds(interval, settings)
            if entry["flagged"]:
                flagged.append(_flag(dimension, metric, entry))
            dimensions.setdefault(dimension, {})[metric] = entry
    thin = sorted({f"{dimension}={group} ({slice_['documents']} documents)"
                   for dimension, by_metric in dimensions.items() for entry in by_metric.values()
                   for group, slice_ in entry["slices"].items() if slice_["evidence"] == NOT_ENOUGH_EVIDENCE})  # fmt: skip
    return {"metrics": metrics, "dimensions": dimensions, "flagged": flagged, "not_enough_evidence": thin}


def _bootstrap(column: pd.Series, groups: pd.Series, eligible: list[str], settings: BiasSettings) -> dict[str, Any]:
    values = pd.to_numeric(column, errors="coerce").astype(float)
    mask = groups.isin(eligible) & values.notna()
    tail = (1 - settings.confidence_level) / 2
    frame = MetricFrame(metrics=_mean_ignoring_nan, y_true=np.zeros(int(mask.sum())), y_pred=values[mask].to_numpy(),
                        sensitive_features=groups[mask].to_numpy(), n_boot=settings.bootstrap_samples,
                        ci_quantiles=[tail, 1 - tail], random_state=settings.random_state)  # fmt: skip
    low, high = frame.by_group_ci
    return {
        "by_group": {str(group): [_round(low[group]), _round(high[group])] for group in low.index},
        "difference": [_round(value) for value in frame.difference_ci()],
        "ratio": [_round(value) for value in frame.ratio_ci()],
    }


def _breach_holds(interval: dict[str, Any], settings: BiasSettings) -> bool:
    difference, ratio = interval.get("difference"), interval.get("ratio")
    low_difference = difference[0] if difference else None
    high_ratio = ratio[1] if ratio else None
    return (low_difference is not None and low_difference > settings.max_difference) or (
        high_ratio is not None and high_ratio < settings.min_ratio
    )


def _flag(dimension: str, metric: str, entry: dict[str, Any]) -> dict[str, Any]:
    compared = {group: s["mean"] for group, s in entry["slices"].items() if s["evidence"] == "enough" and s["mean"] is not None}
    worst, best = min(compared, key=compared.__getitem__), max(compared, key=compared.__getitem__)
    low, high = entry["difference_interval"]
    return {
        "dimension": dimension, "metric": metric, "slice": worst, "value": compared[worst],
        "documents": entry["slices"][worst]["documents"], "compared_with": best, "best_value": compared[best],
        "difference": entry["difference"], "difference_interval": entry["difference_interval"],
        "sentence": f"{metric} for {dimension}={worst} is {compared[worst]:.2f} vs {compared[best]:.2f} for "
                    f"{dimension}={best} (difference {entry['difference']:.2f}, interval {low:.2f}-{high:.2f})",
        "mitigation": MITIGATION[dimension].format(group=worst),
    }  # fmt: skip


def bias_window(store: ObjectStore, metadata: MetadataStore, settings: Settings, now: datetime,
                runs: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Assess the window and write ``reports/bias/<date>/bias_report.html`` and ``.json``;
    returns the report (its ``headline`` first: the verdict)."""
    run_ids = window_run_ids(metadata, settings.bias, now, runs)
    frame, missing = window_frame(store, settings.prefixes.runs, run_ids)
    assessed = assess(frame, settings.bias)
    folder = f"{settings.prefixes.reports}/bias/{now:%Y-%m-%d}"
    report = {
        "headline": headline(assessed, len(run_ids) - len(missing), len(frame), settings.bias),
        "verdict": NO_DATA if frame.empty else FLAGGED if assessed["flagged"] else NOT_FLAGGED,
        "assessed_at": now.isoformat(),
        "window": {"runs": [r for r in run_ids if r not in missing], "runs_without_bias_table": missing,
                   "documents": len(frame), "window_runs": runs or settings.bias.window_runs,
                   "window_days": None if runs else settings.bias.window_days},
        "thresholds": {"max_difference": settings.bias.max_difference, "min_ratio": settings.bias.min_ratio,
                       "min_documents": settings.bias.window_min_documents,
                       "confidence_level": settings.bias.confidence_level,
                       "bootstrap_samples": settings.bias.bootstrap_samples},
        **assessed,
        "report": store.uri(f"{folder}/bias_report.html"),
    }  # fmt: skip
    store.put_bytes(f"{folder}/bias_report.json", json.dumps(report, indent=2, default=str).encode(),
                    content_type="application/json")  # fmt: skip
    store.put_bytes(f"{folder}/bias_report.html", render_html(report).encode(), content_type="text/html")
    return report


def run_bias_window(now: datetime, runs: int | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """:func:`bias_window` on the configured stores: what the DAG and the CLI run."""
    from mlops.config import get_settings
    from mlops.io.objects import open_object_store

    settings = settings or get_settings()
    with MetadataStore.from_settings(settings) as metadata:
        metadata.migrate()
        return bias_window(open_object_store(settings), metadata, settings, now, runs)


def headline(assessed: dict[str, Any], runs: int, documents: int, settings: BiasSettings) -> str:
    window = f"over {runs} run{'s' * (runs != 1)} ({documents} documents)"
    if not documents:
        return f"{NO_DATA}: no completed run in the window has a {BIAS_TABLE} table (check_bias writes it)"
    flagged = assessed["flagged"]
    if flagged:
        return f"{FLAGGED} {window}: " + "; ".join(flag["sentence"] for flag in flagged)
    thin = len(assessed["not_enough_evidence"])
    return (f"{NOT_FLAGGED} {window}; {thin} slice{'s' * (thin != 1)} with {NOT_ENOUGH_EVIDENCE} "
            f"(< {settings.window_min_documents} documents)")  # fmt: skip


def render_html(report: dict[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader

    environment = Environment(loader=PackageLoader("mlops.reporting", "templates"), autoescape=True, trim_blocks=True)
    return environment.get_template("bias_window.html.j2").render(report=report)


def _round(value: Any) -> float | None:
    number = float(value)
    return round(number, 4) if math.isfinite(number) else None
