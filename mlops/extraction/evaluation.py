"""Score extractions against ground-truth labels (``labels.jsonl`` rows from mlops.sample_data).

Used for the extraction-quality metrics of a run and for the bias check, which compares the
same accuracies between groups of documents (text layer vs OCR, scan quality, format...).
Labels are read only through :func:`parse_labels`, so every reader copes the same way with a
file in a format the pipeline does not understand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from mlops.models import FIELD_NAMES, NUMERIC_FIELDS

ABSOLUTE_TOLERANCE = 0.01
"""A numeric field is right within a cent (or 0.01 percentage point, or exactly for months):
a principal misread by one digit must count as wrong, so there is no relative slack."""


def parse_labels(body: bytes) -> tuple[list[dict[str, Any]], list[str]]:
    """The usable rows of a ``labels.jsonl`` file, and one problem per line that is not usable.

    A usable row is a JSON object with a non-empty string ``sha256`` and an object ``fields``:
    what scoring joins on and compares. Anything else (another labels format, a truncated line,
    an empty file, bytes that are not text) is reported, never raised: ground truth is optional,
    finishing the run is not. The caller decides what to say; rows are returned as they are.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [f"not UTF-8 text ({exc.reason} at byte {exc.start})"]
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        return [], ["the file is empty"]
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not JSON ({exc.msg})")
            continue
        problem = _label_row_problem(row)
        if problem:
            problems.append(f"line {number}: {problem}")
        else:
            rows.append(row)
    return rows, problems


def _label_row_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    if not isinstance(row.get("sha256"), str) or not row["sha256"]:
        return "no 'sha256' string"
    if not isinstance(row.get("fields"), dict):
        return "no 'fields' object"
    return None


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _normalise_text(value: Any) -> str:
    return " ".join(str(value).split()).casefold()


def value_matches(field: str, extracted: Any, truth: Any) -> bool:
    """Numbers within ABSOLUTE_TOLERANCE, dates exact (ISO strings), text case- and space-insensitive."""
    if _missing(extracted):
        return False
    if field in NUMERIC_FIELDS:
        try:
            return math.isclose(
                float(extracted), float(truth), rel_tol=0.0, abs_tol=ABSOLUTE_TOLERANCE + 1e-9
            )
        except (TypeError, ValueError):
            return False
    if field == "disbursement_date":
        return str(extracted).strip()[:10] == str(truth)[:10]
    return _normalise_text(extracted) == _normalise_text(truth)


def field_matches(row: Mapping[str, Any], truth_fields: Mapping[str, Any]) -> dict[str, bool]:
    """For each field the ground truth has, whether the extraction row (``Extraction.row()``) got it."""
    return {
        name: value_matches(name, row.get(name), truth)
        for name, truth in truth_fields.items()
        if name in FIELD_NAMES and truth is not None
    }


def accuracy_by_group(
    extractions: pd.DataFrame, labels: list[dict], group_column: str | None = None
) -> dict[str, Any]:
    """Per-field accuracy overall and per value of ``group_column`` (e.g. ``text_source``).

    Extractions are joined to labels by sha256; labels of bad inputs (those with an
    ``expected_quarantine_reason``) and extractions without a label are left out. A field's
    accuracy is the fraction correct among the documents whose label has that field.

    Returns ``{"documents", "fields": {name: accuracy}, "field_accuracy" (all labelled fields
    pooled), "doc_type_accuracy", "by_group": {group value: the same keys}}``.
    """
    truth = {row["sha256"]: row for row in labels if not row.get("expected_quarantine_reason")}
    scored: list[tuple[Any, dict[str, bool], bool]] = []
    for row in extractions.to_dict("records"):
        label = truth.get(row.get("sha256"))
        if label is None:
            continue
        group = row.get(group_column) if group_column else None
        doc_type_right = not _missing(row.get("doc_type")) and row.get("doc_type") == label.get("doc_type")
        scored.append((group, field_matches(row, label.get("fields") or {}), doc_type_right))
    result = _summarise(scored)
    result["by_group"] = {}
    if group_column:
        groups = sorted({str(group) for group, _, _ in scored})
        result["by_group"] = {
            group: _summarise([entry for entry in scored if str(entry[0]) == group]) for group in groups
        }
    return result


def _summarise(scored: list[tuple[Any, dict[str, bool], bool]]) -> dict[str, Any]:
    per_field: dict[str, list[bool]] = {}
    for _, matches, _ in scored:
        for name, correct in matches.items():
            per_field.setdefault(name, []).append(correct)
    pooled = [correct for results in per_field.values() for correct in results]
    return {
        "documents": len(scored),
        "fields": {
            name: sum(per_field[name]) / len(per_field[name]) for name in FIELD_NAMES if name in per_field
        },
        "field_accuracy": sum(pooled) / len(pooled) if pooled else None,
        "doc_type_accuracy": sum(right for _, _, right in scored) / len(scored) if scored else None,
    }
