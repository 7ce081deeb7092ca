"""Per-field statistics of a run's extracted table, small enough to keep for every run.

Each field (a column of the extracted table) gets a kind, its row and missing counts, the mean
and spread of its confidence (from ``<field>_confidence``) and, by kind:

- ``numeric`` and ``date`` (ISO dates, profiled as decimal years): min, max, mean, std, 21
  quantiles (every 5%) and an equal-width histogram;
- ``categorical`` (the configured fields, e.g. doc_type, servicer): value frequencies (top-k and
  the count of the rest) and the value lengths;
- ``text`` (any other string: names, account numbers): the value lengths only, so no borrower's
  name or number is copied into the statistics.

Drift (:mod:`mlops.monitoring.drift`) compares these across runs without reloading any
extraction: the quantiles stand for each run's distribution.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

QUANTILE_PROBABILITIES: tuple[float, ...] = tuple(i / 20 for i in range(21))
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
NOT_PROFILED = ("sha256", "seconds")  # the identity, and a timing
CONFIDENCE_SUFFIX = "_confidence"


def profiled_columns(columns: Iterable[str]) -> list[str]:
    """The fields of an extracted table: every column but the identity, the timing and the
    ``<field>_confidence`` columns of fields that are columns too (folded into their field)."""
    columns = list(columns)
    names = set(columns)
    return [
        column
        for column in columns
        if column not in NOT_PROFILED
        and not (column.endswith(CONFIDENCE_SUFFIX) and column.removesuffix(CONFIDENCE_SUFFIX) in names)
    ]


def field_statistics(
    frame: pd.DataFrame, *, categorical_fields: Iterable[str], top_k: int = 20, bins: int = 10
) -> list[dict[str, Any]]:
    """One statistics dict per field of ``frame`` (see the module docstring)."""
    categorical = set(categorical_fields)
    return [
        _field(frame, column, column in categorical, top_k, bins)
        for column in profiled_columns(frame.columns)
    ]


def _field(frame: pd.DataFrame, column: str, categorical: bool, top_k: int, bins: int) -> dict[str, Any]:
    values = [value for value in frame[column].tolist() if not is_missing(value)]
    kind = value_kind(values, categorical)
    count = len(frame)
    stats: dict[str, Any] = {}
    if kind == "numeric":
        stats = numeric_summary([float(value) for value in values], bins)
    elif kind == "date":
        stats = numeric_summary([_decimal_year(value) for value in values], bins)
    elif kind is not None:
        texts = [str(value) for value in values]
        stats = {
            "distinct": len(set(texts)),
            "lengths": numeric_summary([float(len(text)) for text in texts], bins),
        }
        if kind == "categorical":
            frequencies = Counter(texts).most_common()
            stats["frequencies"] = dict(frequencies[:top_k])
            stats["other"] = sum(n for _, n in frequencies[top_k:])
    confidence_column = f"{column}{CONFIDENCE_SUFFIX}"
    mean_confidence = None
    if confidence_column in frame.columns and values:
        present = frame[column].map(lambda value: not is_missing(value)).astype(bool)
        confidences = pd.to_numeric(frame.loc[present, confidence_column], errors="coerce").dropna()
        if len(confidences):
            mean_confidence = float(confidences.mean())
            stats["confidence"] = {
                "count": len(confidences),
                "std": float(confidences.std(ddof=1)) if len(confidences) > 1 else 0.0,
            }
    return {
        "field": column,
        "kind": kind,
        "count": count,
        "missing": count - len(values),
        "missing_rate": (count - len(values)) / count if count else 0.0,
        "mean_confidence": mean_confidence,
        "stats": stats,
    }


def value_kind(values: list[Any], categorical: bool = False) -> str | None:
    """``numeric``, ``date``, ``categorical`` or ``text``; None when there is no value to tell."""
    if not values:
        return None
    if all(
        isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)
        for value in values
    ):
        return "numeric"
    if all(
        isinstance(value, str) and ISO_DATE.match(value) and _decimal_year(value) is not None
        for value in values
    ):
        return "date"
    return "categorical" if categorical else "text"


def numeric_summary(values: list[float], bins: int) -> dict[str, Any]:
    array = np.asarray([value for value in values if math.isfinite(value)], dtype=float)
    if not len(array):
        return {}
    counts, edges = np.histogram(array, bins=bins)
    return {
        "min": float(array.min()),
        "max": float(array.max()),
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
        "quantiles": [float(q) for q in np.quantile(array, QUANTILE_PROBABILITIES)],
        "histogram": {"edges": [float(edge) for edge in edges], "counts": [int(n) for n in counts]},
    }


def _decimal_year(value: str) -> float | None:
    moment = pd.to_datetime(value, format="%Y-%m-%d", errors="coerce")
    if pd.isna(moment):
        return None
    return moment.year + (moment.day_of_year - 1) / (366 if moment.is_leap_year else 365)


def is_missing(value: Any) -> bool:
    """None, NaN/NA/NaT or a blank string."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
