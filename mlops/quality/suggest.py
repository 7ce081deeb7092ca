"""Expectations suggested from a baseline: a proposed GX suite profiled from good runs' extractions.

GX 1.x has no profiler (removed in GX PR #9859), so this is ours. The frames are profiled as the
gate sees them (:func:`mlops.quality.expectations.prepare_frame`: derived year and mean
confidence included), one frame per run, and every proposal holds on each of those runs:

- the table's columns (extra columns allowed);
- per column, a null-rate bound: present in at least the smallest share any run had, less
  ``slack``;
- numbers: a range from robust quantiles (the 5th to 95th percentile of all runs' values,
  widened by ``margin`` times that spread on each side; kept >= 0, or within [0, 1], when those
  percentiles are; whole numbers for whole-number columns),
  ``mostly`` the smallest in-range share of any run less ``slack``, so the odd outlier the
  baseline already had does not fail it;
- categorical fields (``monitoring.categorical_fields``): the set of values seen;
- ISO dates: their format; other strings (ids, names): a character-class and length format
  (``^[0-9]{10}$``, ``^[0-9a-f]{64}$``), and uniqueness when a column was always present and
  unique in every run.

Nothing is applied: the suite is written beside the current one for a person to review (the
diff :func:`suite_diff` prints), and copied over it by hand to take effect.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlops.monitoring.statistics import is_missing, value_kind
from mlops.quality.expectations import prepare_frame

ISO_DATE_REGEX = r"^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])$"
SEVERITY = "warning"
NOT_DATA = ("seconds",)  # how long extraction took: not a property of the data


def suggest_suite(
    frames: Sequence[pd.DataFrame],
    *,
    name: str,
    categorical_fields: Iterable[str],
    run_ids: Sequence[str] = (),
    margin: float = 0.5,
    slack: float = 0.05,
) -> dict[str, Any]:
    """A GX suite (the JSON of ``config/expectations/*.json``) every run in ``frames`` passes."""
    prepared = [prepare_frame(frame) for frame in frames if len(frame)]
    if not prepared:
        raise ValueError("no extracted rows to profile: pick runs that extracted documents")
    categorical = set(categorical_fields)
    columns = [
        column
        for column in dict.fromkeys(column for frame in prepared for column in frame.columns)
        if column not in NOT_DATA
    ]
    expectations = [
        _expectation(
            "expect_table_columns_to_match_set",
            column_set=columns,
            exact_match=False,
            notes="Every column the baseline runs had; extra columns are allowed.",
        )
    ]
    for column in columns:
        runs = [frame[column] if column in frame else pd.Series([None] * len(frame)) for frame in prepared]
        expectations.extend(_column(column, runs, column in categorical, margin, slack))
    rows = sum(len(frame) for frame in prepared)
    return {
        "name": name,
        "expectations": expectations,
        "meta": {"suggested_from": {"runs": list(run_ids), "rows": rows, "margin": margin, "slack": slack}},
        "notes": f"Suggested by `python -m mlops suggest-expectations` from {len(prepared)} runs ({rows} rows). "
        "Review it, then copy it over the suite file to use it.",
    }


def _column(
    column: str, runs: list[pd.Series], categorical: bool, margin: float, slack: float
) -> list[dict[str, Any]]:
    present = [series[~series.map(is_missing).astype(bool)] for series in runs]
    values = [value for series in present for value in series.tolist()]
    kind = value_kind(values, categorical)
    if kind is None:
        return []
    basis = f"{len(values)} values in {len(runs)} runs"
    found = []
    complete = _mostly(min(len(p) / len(s) for p, s in zip(present, runs, strict=True) if len(s)), slack)
    if complete:
        found.append(
            _expectation(
                "expect_column_values_to_not_be_null",
                column=column,
                mostly=complete,
                notes=f"Null-rate bound: the least complete run less {slack:.0%} ({basis}).",
            )
        )
    if kind == "numeric":
        numbers = np.asarray(values, dtype=float)
        low, high = np.quantile(numbers, [0.05, 0.95])
        spread = (high - low) or abs(high) or 1.0
        lowest, highest = _round(low - margin * spread, math.floor), _round(high + margin * spread, math.ceil)
        if low >= 0:  # amounts, counts, shares
            lowest = max(lowest, 0.0)
        if high <= 1 and low >= 0:  # shares and confidences
            highest = min(highest, 1.0)
        if all(float(number).is_integer() for number in numbers):
            lowest, highest = float(math.floor(lowest)), float(math.ceil(highest))
        inside = [
            ((s.astype(float) >= lowest) & (s.astype(float) <= highest)).mean() for s in present if len(s)
        ]
        found.append(
            _expectation(
                "expect_column_values_to_be_between",
                column=column,
                min_value=lowest,
                max_value=highest,
                mostly=_mostly(min(inside), slack),
                notes=f"5th-95th percentile {low:g} to {high:g}, widened by {margin:.0%} of that spread ({basis}).",
            )
        )
    elif kind == "categorical":
        found.append(
            _expectation(
                "expect_column_values_to_be_in_set",
                column=column,
                value_set=sorted({str(value) for value in values}),
                notes=f"Every value the baseline had ({basis}).",
            )
        )
    else:
        regex = ISO_DATE_REGEX if kind == "date" else text_format([str(value) for value in values])
        matched = [s.astype(str).str.match(regex).mean() for s in present if len(s)]
        found.append(
            _expectation(
                "expect_column_values_to_match_regex",
                column=column,
                regex=regex,
                mostly=_mostly(min(matched), slack),
                notes=f"The format of every baseline value ({basis}).",
            )
        )
        always_unique = all(
            len(p) == len(s) and p.astype(str).is_unique for p, s in zip(present, runs, strict=True)
        )
        if always_unique and len(values) > len(runs):
            found.append(
                _expectation(
                    "expect_column_values_to_be_unique",
                    column=column,
                    notes=f"Present and unique in every baseline run ({basis}).",
                )
            )
    return found


def text_format(values: Iterable[str]) -> str:
    """A regex for strings like these: the character classes they use and their length range."""
    values = list(values)
    characters = set("".join(values))
    classes = []
    if characters & set("0123456789"):
        classes.append("0-9")
    lower = {c for c in characters if c.islower() and c.isascii()}
    if lower:
        classes.append("a-f" if lower <= set("abcdef") else "a-z")
    if any(c.isupper() and c.isascii() for c in characters):
        classes.append("A-Z")
    others = sorted(c for c in characters if not (c.isascii() and c.isalnum()))
    allowed = "".join(classes) + "".join("\\" + c if c in "\\]^-[" else c for c in others)
    shortest, longest = min(map(len, values)), max(map(len, values))
    length = f"{{{shortest}}}" if shortest == longest else f"{{{shortest},{longest}}}"
    return f"^[{allowed}]{length}$"


def suite_diff(current: dict[str, Any], proposed: dict[str, Any]) -> list[str]:
    """A readable diff of two suite JSONs, one line per expectation: ``+`` proposed only, ``-``
    current only, ``~`` changed (each changed argument as ``old -> new``). Unchanged ones are
    counted in the last line."""
    before, after = _by_key(current), _by_key(proposed)
    lines, same = [], 0
    for key in sorted(set(before) | set(after), key=lambda key: (key[1] or "", key[0], key[2])):
        label = f"{key[0]}({key[1]})" if key[1] else key[0]
        if key[2]:
            label += f" where {key[2]}"
        old, new = before.get(key), after.get(key)
        if old is None or new is None:
            sign, kwargs = ("+", new) if old is None else ("-", old)
            shown = ", ".join(f"{arg} {_shown(value)}" for arg, value in kwargs.items())
            lines.append(f"{sign} {label}: {shown}" if shown else f"{sign} {label}")
            continue
        changes = [_change(arg, old.get(arg), new.get(arg)) for arg in dict.fromkeys([*old, *new])]
        changes = [change for change in changes if change]
        if changes:
            lines.append(f"~ {label}: " + "; ".join(changes))
        else:
            same += 1
    counts = {sign: sum(line.startswith(sign) for line in lines) for sign in "+~-"}
    lines.append(
        f"{counts['+']} new, {counts['~']} changed, {counts['-']} only in the current suite, {same} unchanged"
    )
    return lines


def _by_key(suite: dict[str, Any]) -> dict[tuple[str, str | None, str], dict[str, Any]]:
    keyed = {}
    for expectation in suite.get("expectations", []):
        kwargs = dict(expectation.get("kwargs", {}))
        column = kwargs.pop("column", None)
        condition = str(kwargs.pop("row_condition", "") or "")
        keyed[(expectation["type"], column, condition)] = kwargs
    return keyed


def _change(arg: str, old: Any, new: Any) -> str | None:
    if old == new:
        return None
    if isinstance(old, list) and isinstance(new, list):
        added = [value for value in new if value not in old]
        removed = [value for value in old if value not in new]
        parts = ([f"+{_shown(added)}"] if added else []) + ([f"-{_shown(removed)}"] if removed else [])
        return f"{arg} " + " ".join(parts) if parts else None
    return f"{arg} {_shown(old)} -> {_shown(new)}"


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return (
            "["
            + ", ".join(map(str, value[:8]))
            + (f", ... {len(value) - 8} more" if len(value) > 8 else "")
            + "]"
        )
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _expectation(kind: str, notes: str, **kwargs: Any) -> dict[str, Any]:
    kwargs = {arg: value for arg, value in kwargs.items() if value is not None}
    return {"type": kind, "kwargs": kwargs, "meta": {}, "notes": notes, "severity": SEVERITY}


def _mostly(share: float, slack: float) -> float:
    """``mostly`` a little below the share the baseline reached (0 when that is ``slack`` or less)."""
    return max(math.floor((share - slack) * 100) / 100, 0.0)


def _round(value: float, direction: Any) -> float:
    """Outward to three significant digits: 93,417.25 -> 93,500 (up)."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    step = 10 ** (math.floor(math.log10(abs(value))) - 2)
    return float(direction(value / step) * step)
