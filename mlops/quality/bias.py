"""check_bias: is extraction quality equally good for every kind of document?

The input is one row per document with *slice* columns (doc_type, servicer, format, page_bucket,
scan_quality) and per-document *metric* columns in [0, 1] (completeness, mean_confidence,
validation_pass, optional field_accuracy, NaN where a document has no ground truth). For each
slice dimension and metric, a fairlearn ``MetricFrame`` averages the metric per group; its
``difference()`` (max - min) and ``ratio()`` (min / max) measure the disparity.

fairlearn metrics take ``(y_true, y_pred)``; our quality metrics are per-row scores, so the score
goes in as ``y_pred``, ``y_true`` is a dummy array of zeros, and the metric is the NaN-ignoring
mean of ``y_pred``. A second metric counts the non-NaN rows, so a group's size is the number of
documents that actually carry the metric (for field_accuracy: the labelled ones).

Groups smaller than ``min_group_size`` are reported but left out of the decision: the
difference and ratio are computed on a MetricFrame over the large-enough groups only, because
one bad scan in a group of two is noise, not bias.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # fairlearn imports scikit-learn (~2 s): only when a run has documents to assess
    from fairlearn.metrics import MetricFrame

DIMENSIONS: tuple[str, ...] = ("doc_type", "servicer", "format", "page_bucket", "scan_quality")
METRICS: tuple[str, ...] = ("completeness", "mean_confidence", "validation_pass", "field_accuracy")
UNKNOWN = "unknown"

# scan_quality cut points on the 0-1 clarity score of preprocess_documents (0.5 = sharpness at
# its half point with no noise): clarity >= GOOD is "good", >= FAIR is "fair", below is "poor".
CLARITY_GOOD = 0.6
CLARITY_FAIR = 0.3


def page_bucket(pages: int | None) -> str:
    """The page-count slice: "1", "2-3", "4+", or "unknown" without a page count.

    Long documents put fields on later pages and multi-page OCR compounds errors, so length is
    a slice worth checking; three buckets keep the groups large enough to compare.
    """
    if pages is None or pd.isna(pages) or pages < 1:
        return UNKNOWN
    if pages == 1:
        return "1"
    return "2-3" if pages <= 3 else "4+"


def scan_quality_bucket(has_text_layer: bool, clarity: float | None) -> str:
    """The scan-quality slice: "text_layer" when the document has a text layer (image quality
    barely matters then), else "good" (clarity >= 0.6), "fair" (>= 0.3) or "poor" (< 0.3);
    "unknown" without a clarity score."""
    if has_text_layer:
        return "text_layer"
    if clarity is None or pd.isna(clarity):
        return UNKNOWN
    if clarity >= CLARITY_GOOD:
        return "good"
    return "fair" if clarity >= CLARITY_FAIR else "poor"


@dataclass(frozen=True)
class BiasThresholds:
    """A metric's disparity is flagged when difference > max_difference or ratio < min_ratio,
    measured over groups with at least min_group_size documents carrying the metric."""

    max_difference: float = 0.2
    min_ratio: float = 0.8
    min_group_size: int = 3


@dataclass(frozen=True)
class MetricDisparity:
    """One metric over one dimension. difference/ratio are None when fewer than two groups are
    large enough to compare (a single group cannot be treated unequally)."""

    metric: str
    by_group: dict[str, float | None]
    group_sizes: dict[str, int]
    excluded_groups: list[str]
    difference: float | None
    ratio: float | None
    flagged: bool
    sentence: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "by_group": self.by_group,
            "group_sizes": self.group_sizes,
            "excluded_groups": self.excluded_groups,
            "difference": self.difference,
            "ratio": self.ratio,
            "flagged": self.flagged,
        }


@dataclass(frozen=True)
class DimensionResult:
    dimension: str
    metrics: dict[str, MetricDisparity]

    @property
    def max_disparity(self) -> float | None:
        """The largest difference over this dimension's metrics; None when nothing was comparable."""
        differences = [m.difference for m in self.metrics.values() if m.difference is not None]
        return max(differences) if differences else None


@dataclass(frozen=True)
class BiasResult:
    thresholds: BiasThresholds
    documents: int
    dimensions: dict[str, DimensionResult] = field(default_factory=dict)

    @property
    def flags(self) -> list[str]:
        """One human sentence per flagged (dimension, metric)."""
        return [
            m.sentence
            for dim in self.dimensions.values()
            for m in dim.metrics.values()
            if m.flagged and m.sentence
        ]

    @property
    def passed(self) -> bool:
        return not self.flags

    @property
    def max_disparity(self) -> dict[str, float | None]:
        """{dimension: max disparity}: the ``bias`` section of run_summary.json."""
        return {name: dim.max_disparity for name, dim in self.dimensions.items()}

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN becomes None) for the run outputs and the report."""
        return {
            "passed": self.passed,
            "documents": self.documents,
            "thresholds": {
                "max_difference": self.thresholds.max_difference,
                "min_ratio": self.thresholds.min_ratio,
                "min_group_size": self.thresholds.min_group_size,
            },
            "max_disparity": self.max_disparity,
            "dimensions": {
                name: {
                    "max_disparity": dim.max_disparity,
                    "metrics": {metric: m.to_dict() for metric, m in dim.metrics.items()},
                }
                for name, dim in self.dimensions.items()
            },
            "flags": self.flags,
        }


def check_bias(
    frame: pd.DataFrame,
    dimensions: Sequence[str] = DIMENSIONS,
    thresholds: BiasThresholds | None = None,
) -> BiasResult:
    """Compare every metric column present in ``frame`` across the groups of each dimension.

    Missing slice values count as the group "unknown". A dimension column absent from a
    non-empty frame is a caller bug and raises KeyError; an absent metric column is skipped
    (field_accuracy exists only when ground truth was supplied).
    """
    thresholds = thresholds or BiasThresholds()
    if frame.empty:
        empty = {dimension: DimensionResult(dimension, {}) for dimension in dimensions}
        return BiasResult(thresholds, 0, empty)
    missing = [d for d in dimensions if d not in frame.columns]
    if missing:
        raise KeyError(
            f"bias check: frame has no slice column(s) {missing}; add them or drop them "
            f"from the dimensions (available: {list(frame.columns)})"
        )
    metrics = [m for m in METRICS if m in frame.columns]
    results = {}
    for dimension in dimensions:
        groups = frame[dimension].astype("object").where(frame[dimension].notna(), UNKNOWN).astype(str)
        results[dimension] = DimensionResult(
            dimension,
            {metric: _disparity(dimension, metric, groups, frame[metric], thresholds) for metric in metrics},
        )
    return BiasResult(thresholds, len(frame), results)


def _mean_ignoring_nan(y_true: Any, y_pred: Any) -> float:
    values = np.asarray(y_pred, dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def _count_not_nan(y_true: Any, y_pred: Any) -> int:
    return int((~np.isnan(np.asarray(y_pred, dtype=float))).sum())


def _metric_frame(values: pd.Series, groups: pd.Series, with_count: bool = False) -> MetricFrame:
    from fairlearn.metrics import MetricFrame

    metrics: Any = (
        {"value": _mean_ignoring_nan, "count": _count_not_nan} if with_count else _mean_ignoring_nan
    )
    return MetricFrame(
        metrics=metrics,
        y_true=np.zeros(len(values)),
        y_pred=values.to_numpy(),
        sensitive_features=groups,
    )


def _disparity(
    dimension: str, metric: str, groups: pd.Series, column: pd.Series, thresholds: BiasThresholds
) -> MetricDisparity:
    values = pd.to_numeric(column, errors="coerce").astype(float).reset_index(drop=True)
    groups = groups.reset_index(drop=True)
    by_group = _metric_frame(values, groups, with_count=True).by_group
    means = {str(g): _clean(v) for g, v in by_group["value"].items()}
    sizes = {str(g): int(n) for g, n in by_group["count"].items()}
    eligible = [g for g, n in sizes.items() if n >= thresholds.min_group_size]
    excluded = [g for g in sizes if g not in eligible]
    if len(eligible) < 2:
        return MetricDisparity(metric, means, sizes, excluded, None, None, False)

    mask = groups.isin(eligible) & values.notna()
    decision = _metric_frame(values[mask], groups[mask])
    difference, ratio = _clean(decision.difference()), _clean(decision.ratio())
    breaches = []
    if difference is not None and difference > thresholds.max_difference:
        breaches.append(f"difference {difference:.2f} > {thresholds.max_difference:.2f}")
    if ratio is not None and ratio < thresholds.min_ratio:
        breaches.append(f"ratio {ratio:.2f} < {thresholds.min_ratio:.2f}")
    sentence = None
    if breaches:
        worst = str(decision.by_group.idxmin())
        best = str(decision.by_group.idxmax())
        sentence = (
            f"{metric} for {dimension}={worst} is {means[worst]:.2f} vs {means[best]:.2f} "
            f"for {dimension}={best} ({'; '.join(breaches)})"
        )
    return MetricDisparity(metric, means, sizes, excluded, difference, ratio, bool(breaches), sentence)


def _clean(value: Any) -> float | None:
    """A plain float for JSON, None for NaN/inf (e.g. the ratio when every group scores 0).

    Rounded to 6 places so float noise (0.2000000000000001) neither shows up in the report nor
    tips a disparity over a threshold it only equals."""
    number = float(value)
    return round(number, 6) if math.isfinite(number) else None
