"""Anomaly detectors for the detect_anomalies stage: per-document findings, not a batch verdict.

The GX gate (expectations.py) judges the batch; these detectors name each suspicious value so a
person can look at that document. Two detectors:

- ``RuleDetector``: hard limits from ``config/anomaly_rules.yaml`` (ranges, date window relative
  to the run date, fields a document type must carry). For one field, only the most severe
  breached range is reported, so a 48% rate is one critical finding, not critical + warning.
- ``StatisticalDetector``: robust (median/MAD) z-score against earlier runs plus this batch, for
  values inside the hard limits that are still far from everything seen before.
- ``IsolationForestDetector``: scikit-learn's IsolationForest over the numeric fields together
  and the payment against the amortised payment, trained on earlier runs only, for documents
  whose values are each plausible but not together.

None reads the clock or a store: the caller passes ``as_of`` (the run's logical date) and the
history frame, so a re-run of the same run gives the same findings.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlops.errors import ConfigError
from mlops.models import DOCUMENT_TYPES, FIELD_NAMES, NUMERIC_FIELDS, Finding

if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest

    from mlops.config import IsolationForestSettings

Severity = Literal["warning", "critical"]
SEVERITY_ORDER = {"critical": 0, "warning": 1}
MAD_SCALE = 0.6745  # makes MAD comparable to a standard deviation for normal data
MEAN_AD_SCALE = 1.253314  # the same for the mean absolute deviation (used when MAD is 0)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RangeRule(_Strict):
    """A numeric field must lie in [min, max] (either bound may be omitted)."""

    name: str
    field: str
    min: float | None = None
    max: float | None = None
    severity: Severity = "critical"

    @field_validator("field")
    @classmethod
    def _numeric(cls, value: str) -> str:
        if value not in NUMERIC_FIELDS:
            raise ValueError(f"{value!r} is not a numeric field; use one of {', '.join(NUMERIC_FIELDS)}")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> RangeRule:
        if self.min is None and self.max is None:
            raise ValueError(f"range rule {self.name!r} needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range rule {self.name!r} has min {self.min} > max {self.max}")
        return self


class DateRule(_Strict):
    """An ISO date field must be a date, not before ``not_before`` and at most
    ``max_days_after_as_of`` days after the run date."""

    name: str
    field: str
    not_before: date | None = None
    max_days_after_as_of: int | None = Field(default=None, ge=0)
    severity: Severity = "critical"

    @field_validator("field")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in FIELD_NAMES:
            raise ValueError(f"{value!r} is not an extracted field; use one of {', '.join(FIELD_NAMES)}")
        return value


class RequiredRule(_Strict):
    """Fields a document type must carry, e.g. a billing statement without a payment is suspect."""

    severity: Severity = "warning"
    by_doc_type: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("by_doc_type")
    @classmethod
    def _known(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for doc_type, fields in value.items():
            if doc_type not in DOCUMENT_TYPES:
                raise ValueError(
                    f"unknown document type {doc_type!r}; use one of {', '.join(DOCUMENT_TYPES)}"
                )
            unknown = [name for name in fields if name not in FIELD_NAMES]
            if unknown:
                raise ValueError(f"{doc_type}: unknown field(s) {unknown}; use names from FIELD_NAMES")
        return value


class StatisticalConfig(_Strict):
    fields: list[str] = Field(default_factory=lambda: list(NUMERIC_FIELDS))
    threshold: float = Field(default=3.5, gt=0)
    min_history: int = Field(default=20, ge=3)
    severity: Severity = "warning"

    @field_validator("fields")
    @classmethod
    def _numeric(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in NUMERIC_FIELDS]
        if unknown:
            raise ValueError(f"not numeric field(s) {unknown}; use names from {', '.join(NUMERIC_FIELDS)}")
        return value


class AnomalyRules(_Strict):
    ranges: list[RangeRule] = Field(default_factory=list)
    dates: list[DateRule] = Field(default_factory=list)
    required: RequiredRule = Field(default_factory=RequiredRule)
    statistical: StatisticalConfig = Field(default_factory=StatisticalConfig)


def load_rules(path: Path) -> AnomalyRules:
    """Read and validate the rules YAML; a bad file raises ConfigError naming each bad key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read anomaly rules {path}: {exc}") from exc
    try:
        return AnomalyRules.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_location(error['loc'])}: {error['msg']}" for error in exc.errors(include_url=False)
        )
        raise ConfigError(f"invalid anomaly rules in {path}: {problems}") from exc


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _show(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _as_date(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip()) if len(str(value).strip()) == 10 else None
    except ValueError:
        return None


class RuleDetector:
    """Hard limits: ranges, the date window around ``as_of`` and required fields per doc type."""

    name = "rules"

    def __init__(self, rules: AnomalyRules) -> None:
        self.rules = rules
        self._ranges = sorted(rules.ranges, key=lambda rule: SEVERITY_ORDER[rule.severity])

    def detect(self, frame: pd.DataFrame, as_of: date) -> list[Finding]:
        findings: list[Finding] = []
        for row in frame.to_dict("records"):
            sha = str(row.get("sha256"))
            findings += self._check_ranges(sha, row)
            findings += self._check_dates(sha, row, as_of)
            findings += self._check_required(sha, row)
        return findings

    def _finding(self, sha: str, field: str, value: object, severity: str, reason: str) -> Finding:
        shown = None if _is_missing(value) else _show(value)
        return Finding(
            sha256=sha, field=field, value=shown, detector=self.name, severity=severity, reason=reason
        )

    def _check_ranges(self, sha: str, row: dict) -> list[Finding]:
        findings: list[Finding] = []
        reported: set[str] = set()
        for rule in self._ranges:
            value = row.get(rule.field)
            if rule.field in reported or _is_missing(value):
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue  # not a number: the GX range expectation on this column reports it
            if rule.min is not None and number < rule.min:
                breach = f"is below the minimum {_show(rule.min)}"
            elif rule.max is not None and number > rule.max:
                breach = f"is above the maximum {_show(rule.max)}"
            else:
                continue
            reported.add(rule.field)
            reason = f"rule {rule.name}: {rule.field} {_show(value)} {breach}"
            findings.append(self._finding(sha, rule.field, value, rule.severity, reason))
        return findings

    def _check_dates(self, sha: str, row: dict, as_of: date) -> list[Finding]:
        findings: list[Finding] = []
        for rule in self.rules.dates:
            value = row.get(rule.field)
            if _is_missing(value):
                continue
            parsed = _as_date(value)
            if parsed is None:
                breach = "is not an ISO yyyy-mm-dd date"
            elif rule.not_before is not None and parsed < rule.not_before:
                breach = f"is before {rule.not_before.isoformat()}"
            elif rule.max_days_after_as_of is not None and parsed > (
                latest := as_of + timedelta(days=rule.max_days_after_as_of)
            ):
                breach = (
                    f"is more than {rule.max_days_after_as_of} days after the run date "
                    f"{as_of.isoformat()} (latest allowed {latest.isoformat()})"
                )
            else:
                continue
            reason = f"rule {rule.name}: {rule.field} {value} {breach}"
            findings.append(self._finding(sha, rule.field, value, rule.severity, reason))
        return findings

    def _check_required(self, sha: str, row: dict) -> list[Finding]:
        doc_type = row.get("doc_type")
        required = self.rules.required.by_doc_type.get(doc_type, []) if isinstance(doc_type, str) else []
        return [
            self._finding(
                sha,
                field,
                None,
                self.rules.required.severity,
                f"rule required.{doc_type}: a {doc_type} must have {field}; it is missing",
            )
            for field in required
            if _is_missing(row.get(field))
        ]


class StatisticalDetector:
    """Robust z-score per numeric field: ``0.6745 * (x - median) / MAD`` over the reference values
    (history from earlier runs + this batch); a batch value with ``|z| > threshold`` is a finding.

    - MAD == 0 (over half the values identical, e.g. most terms are 120 months): the mean absolute
      deviation scaled by 1.2533 replaces it; if that is 0 too, all values are equal: no findings.
    - Fewer than ``min_history`` reference values: the field is skipped with no findings. With so
      few values neither MAD nor IQR separates an outlier from an unusual-but-valid loan, and the
      rule detector's hard limits still apply.
    """

    name = "robust_zscore"

    def __init__(self, config: StatisticalConfig | None = None) -> None:
        self.config = config or StatisticalConfig()

    def detect(self, frame: pd.DataFrame, history: pd.DataFrame | None = None) -> list[Finding]:
        findings: list[Finding] = []
        for field in self.config.fields:
            if field not in frame.columns:
                continue
            current = pd.to_numeric(frame[field], errors="coerce")
            past = (
                pd.to_numeric(history[field], errors="coerce")
                if history is not None and field in history.columns
                else pd.Series(dtype=float)
            )
            reference = pd.concat([past, current], ignore_index=True).dropna().astype(float)
            if len(reference) < self.config.min_history:
                continue
            median = float(reference.median())
            deviations = (reference - median).abs()
            mad = float(deviations.median())
            if mad > 0:
                scale, spread = mad / MAD_SCALE, f"MAD {mad:.4g}"
            else:
                mean_ad = float(deviations.mean())
                if mean_ad == 0:
                    continue
                scale, spread = MEAN_AD_SCALE * mean_ad, f"MAD 0, mean abs. deviation {mean_ad:.4g}"
            for sha, value in zip(frame["sha256"], current, strict=True):
                if math.isnan(value):
                    continue
                score = (value - median) / scale
                if abs(score) > self.config.threshold:
                    reason = (
                        f"robust z-score {score:.1f} beyond +/-{_show(self.config.threshold)} "
                        f"(median {median:.4g}, {spread}, {len(reference)} reference values)"
                    )
                    findings.append(
                        Finding(
                            sha256=str(sha),
                            field=field,
                            value=_show(value),
                            detector=self.name,
                            severity=self.config.severity,
                            reason=reason,
                        )
                    )
        return findings


def detect_anomalies(
    frame: pd.DataFrame, history: pd.DataFrame | None, rules: AnomalyRules, as_of: date
) -> list[Finding]:
    """All findings for this batch: rule findings first, then statistical ones."""
    if len(frame) == 0:
        return []
    return RuleDetector(rules).detect(frame, as_of) + StatisticalDetector(rules.statistical).detect(
        frame, history
    )


# monthly_payment / the payment that amortises principal at the rate over the term
PAYMENT_RATIO = "payment_ratio"
FOREST_FEATURES = (*NUMERIC_FIELDS, PAYMENT_RATIO)
# money is log-normal, and a ratio of 1/3 is as far from 1 as 3 only in logs
LOG_SCALED = ("principal", "monthly_payment", PAYMENT_RATIO)


def amortised_payment(principal: pd.Series, rate_percent: pd.Series, term_months: pd.Series) -> pd.Series:
    """The level monthly payment that repays ``principal`` at ``rate_percent`` a year over the term."""
    monthly = rate_percent / 1200
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        annuity = principal * monthly / (1 - (1 + monthly) ** -term_months)
        return annuity.where(monthly != 0, principal / term_months)


def forest_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The forest's inputs, for the rows that have every numeric field with a positive principal,
    payment and term (others cannot be scored; the rules report non-positive amounts)."""
    numbers = frame.reindex(columns=list(NUMERIC_FIELDS)).apply(pd.to_numeric, errors="coerce").astype(float)
    ratio = numbers["monthly_payment"] / amortised_payment(
        numbers["principal"], numbers["interest_rate"], numbers["term_months"]
    )
    features = numbers.assign(**{PAYMENT_RATIO: ratio})
    return features[(features[list(LOG_SCALED)] > 0).all(axis=1) & np.isfinite(features).all(axis=1)]


def _model_inputs(features: pd.DataFrame) -> np.ndarray:
    return features.assign(**{name: np.log(features[name]) for name in LOG_SCALED}).to_numpy()


class IsolationForestDetector:
    """IsolationForest over :data:`FOREST_FEATURES`, fitted on the history (stored extractions of
    earlier runs) and the batch. The batch belongs in the fit: a tree routes a value beyond the
    range it was grown on with the most extreme training rows, so a forest grown on the history
    alone hardly isolates a payment three times what the loan needs; isolating such rows is what
    the forest is for, and a few of them do not make it think they are normal.

    The score shown is scikit-learn's anomaly score (``-score_samples``, about 0.5 for ordinary
    rows, towards 1 for isolated ones); the threshold is the score beyond which ``contamination``
    of the rows it was fitted on lie (``-offset_``). With fewer than ``min_history_rows``
    complete rows in the history it is skipped and :attr:`window` says why.
    """

    name = "isolation_forest"

    def __init__(self, config: IsolationForestSettings) -> None:
        self.config = config
        self.model: IsolationForest | None = None
        self.window: dict[str, Any] = {"detector": self.name, "trained": False}

    def detect(self, frame: pd.DataFrame, history: pd.DataFrame | None) -> list[Finding]:
        history = pd.DataFrame() if history is None else history.tail(self.config.max_history_rows)
        past, batch = forest_features(history), forest_features(frame)
        settings = self.config.model_dump(exclude={"enabled", "severity"})
        self.window |= {"history_rows": len(past), "batch_rows": len(batch), "settings": settings}
        if not self.config.enabled:
            self.window["skipped"] = "disabled (anomalies.isolation_forest.enabled: false)"
            return []
        if len(past) < self.config.min_history_rows:
            self.window["skipped"] = (
                f"{len(past)} stored extractions of earlier runs have every numeric field, "
                f"{self.config.min_history_rows} needed (anomalies.isolation_forest.min_history_rows)"
            )
            return []
        if batch.empty:
            self.window["skipped"] = "no extraction in this run has every numeric field"
            return []
        from sklearn.ensemble import IsolationForest  # ~1.5 s: only for a forest to grow

        training = pd.concat([past, batch])
        self.model = IsolationForest(
            n_estimators=self.config.n_estimators,
            contamination=self.config.contamination,
            random_state=self.config.random_state,
        ).fit(_model_inputs(training))
        threshold = -float(self.model.offset_)
        run_ids = sorted(set(history.loc[past.index, "run_id"])) if "run_id" in history else []
        self.window |= {"trained": True, "threshold": round(threshold, 4), "run_ids": run_ids}
        medians = training.median()
        spreads = (training.quantile(0.75) - training.quantile(0.25)).replace(0, np.nan)
        scores = -self.model.score_samples(_model_inputs(batch))
        findings = []
        for (index, row), score in zip(batch.iterrows(), scores, strict=True):
            if score <= threshold:
                continue
            unusual = ((row - medians).abs() / spreads).fillna(0).idxmax()
            reason = (
                f"isolation forest score {score:.3f} above threshold {threshold:.3f} "
                f"(contamination {_show(self.config.contamination)}, fitted on {len(past)} rows of "
                f"{len(run_ids)} earlier runs and {len(batch)} of this run); most unusual: {unusual} "
                f"{row[unusual]:.4g} (median {medians[unusual]:.4g})"
            )
            findings.append(
                Finding(
                    sha256=str(frame.loc[index, "sha256"]),
                    field=unusual if unusual in NUMERIC_FIELDS else None,
                    value=", ".join(f"{name} {row[name]:.6g}" for name in FOREST_FEATURES),
                    detector=self.name,
                    severity=self.config.severity,
                    reason=reason,
                )
            )
        return findings
