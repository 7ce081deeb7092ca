"""Drift of a run against a baseline window: the last N good runs before it.

Everything is computed from the stored field statistics (:mod:`mlops.monitoring.statistics`),
never from the extractions, so a check over a long history reads a few rows per run. The tests
are scipy.stats' (the KS distribution, Fisher's exact test, chi-square, Welch's t-test from
summary statistics) and scipy's Jensen-Shannon distance; the distributions they see are the
stored quantiles, pooled over the baseline runs by document count.

A check *drifts* only when its change is significant (p below ``monitoring.p_value``: a run of a
dozen documents moves by chance) and large enough to matter (its ``min_*`` setting):

- ``schema``: a field appears, disappears or changes kind (numeric -> text, ...);
- ``missing_rate``: the share of documents without the field rose (Fisher's exact test);
- ``ks``: the distribution of a numeric or date field, or of a text field's value lengths, moved
  (two-sample Kolmogorov-Smirnov distance between the quantile CDFs; its threshold is the larger
  of the critical distance at ``p_value`` for these sample sizes and ``min_ks_statistic``);
- ``jensen_shannon``: a categorical field's frequencies moved (chi-square test of homogeneity);
- ``new_category`` / ``vanished_category``: a value the baseline never had (or always had) is
  too common (or absent) to be chance;
- ``confidence_drop``: the field's mean confidence fell (Welch's t-test).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from mlops.monitoring.statistics import QUANTILE_PROBABILITIES

if TYPE_CHECKING:
    from mlops.config import MonitoringSettings
    from mlops.io.metadata import MetadataStore
    from mlops.io.objects import ObjectStore

DRIFT = "DRIFT"
NO_DRIFT = "NO DRIFT"
NOT_ENOUGH_HISTORY = "NOT ENOUGH HISTORY"
OTHER = "<other>"  # values beyond a run's top-k


@dataclass(frozen=True)
class DriftCheck:
    """One test of one field: the statistic, its value, the threshold it is held to and, for
    statistical tests, the p-value (drifted needs p < the configured level too)."""

    field: str
    statistic: str
    value: float | None
    threshold: float | None
    drifted: bool
    p_value: float | None = None
    detail: str = ""

    @property
    def severity(self) -> float:
        """How far past its threshold: orders the drifted checks, worst first."""
        if self.value is None or not self.threshold:
            return float("inf")
        return abs(self.value) / self.threshold

    def line(self) -> str:
        parts = [f"{self.field:<20} {self.statistic:<18}"]
        if self.value is not None:
            parts.append(
                f"{self.value:.3f}"
                + (f" (threshold {self.threshold:.3f})" if self.threshold is not None else "")
            )
        if self.p_value is not None:
            parts.append(f"p={self.p_value:.2g}")
        if self.detail:
            parts.append(self.detail)
        return "  ".join(parts)


@dataclass
class DriftReport:
    run_id: str
    verdict: str
    baseline_run_ids: list[str]
    checks: list[DriftCheck] = field(default_factory=list)
    min_baseline_runs: int = 0

    def drifted(self) -> list[DriftCheck]:
        return sorted((check for check in self.checks if check.drifted), key=lambda check: -check.severity)

    def worst_per_field(self) -> list[DriftCheck]:
        """Each drifted field's worst check, worst field first."""
        worst: dict[str, DriftCheck] = {}
        for check in self.drifted():
            worst.setdefault(check.field, check)
        return list(worst.values())

    def headline(self) -> str:
        baseline = f"{len(self.baseline_run_ids)} baseline run{'s' * (len(self.baseline_run_ids) != 1)}"
        if self.verdict == NOT_ENOUGH_HISTORY:
            return (f"{NOT_ENOUGH_HISTORY} for run {self.run_id}: {baseline} with field statistics, "
                    f"{self.min_baseline_runs} needed (monitoring.min_baseline_runs)")  # fmt: skip
        fields = [check.field for check in self.worst_per_field()]
        if not fields:
            return f"{NO_DRIFT} in run {self.run_id}: {len(self.checks)} checks against {baseline}"
        named = ", ".join(fields[:5]) + (f" and {len(fields) - 5} more" if len(fields) > 5 else "")
        return f"{DRIFT} in run {self.run_id}: {len(fields)} field{'s' * (len(fields) != 1)} drifted against {baseline}: {named}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "verdict": self.verdict,
            "headline": self.headline(),
            "baseline_run_ids": self.baseline_run_ids,
            "drifted": [asdict(check) for check in self.drifted()],
            "checks": [asdict(check) for check in self.checks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False, default=str)


def select_baseline(runs: Sequence[Mapping[str, Any]], run_id: str | None, with_statistics: set[str],
                    settings: MonitoringSettings, limit: int | None = None) -> list[str]:  # fmt: skip
    """The last ``limit`` (default ``baseline_runs``) runs started before ``run_id`` (None: of all
    runs) that completed with a good verdict and have field statistics, oldest first. ``runs`` is
    oldest first."""
    order = [run["run_id"] for run in runs]
    before = runs[: order.index(run_id)] if run_id in order else runs
    good = [
        run["run_id"]
        for run in before
        if run["outcome"] == "completed" and run["verdict"] in settings.baseline_verdicts
        and run["run_id"] in with_statistics
    ]  # fmt: skip
    return good[-(limit or settings.baseline_runs) :]


def compare(run_id: str, current: Sequence[Mapping[str, Any]], baseline: Mapping[str, Sequence[Mapping[str, Any]]],
            settings: MonitoringSettings) -> DriftReport:  # fmt: skip
    """The drift report of ``current`` (one run's field statistics) against ``baseline`` (run id
    -> field statistics)."""
    report = DriftReport(run_id, NO_DRIFT, list(baseline), min_baseline_runs=settings.min_baseline_runs)
    if len(baseline) < settings.min_baseline_runs:
        report.verdict = NOT_ENOUGH_HISTORY
        return report
    history: dict[str, list[Mapping[str, Any]]] = {}
    for rows in baseline.values():
        for row in rows:
            history.setdefault(row["field"], []).append(row)
    now = {row["field"]: row for row in current}
    for name in sorted(set(history) - set(now)):
        if len(history[name]) == len(baseline):
            report.checks.append(DriftCheck(name, "field_disappeared", None, None, True,
                                            detail=f"in all {len(baseline)} baseline runs, not in this run"))  # fmt: skip
    for name, row in now.items():
        report.checks.extend(_field_checks(name, row, history.get(name, []), settings))
    report.verdict = DRIFT if any(check.drifted for check in report.checks) else NO_DRIFT
    return report


def drift_for_run(metadata: MetadataStore, run_id: str, settings: MonitoringSettings,
                  baseline_runs: int | None = None) -> DriftReport:  # fmt: skip
    """Load the run's and its baseline's statistics from the metadata store and compare them."""
    with_statistics = metadata.runs_with_field_statistics()
    baseline_ids = select_baseline(metadata.runs(), run_id, with_statistics, settings, baseline_runs)
    rows = metadata.field_statistics([run_id, *baseline_ids])
    by_run: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault(row["run_id"], []).append(row)
    return compare(
        run_id, by_run.get(run_id, []), {rid: by_run.get(rid, []) for rid in baseline_ids}, settings
    )


def _field_checks(name: str, row: Mapping[str, Any], history: list[Mapping[str, Any]],
                  settings: MonitoringSettings) -> list[DriftCheck]:  # fmt: skip
    if not history:
        if row["kind"] is None:
            return []
        return [DriftCheck(name, "field_appeared", None, None, True, detail=f"new {row['kind']} field")]
    checks = [_missing_rate(name, row, history, settings)]
    kinds = Counter(past["kind"] for past in history if past["kind"] is not None)
    if row["kind"] is None or not kinds:
        return checks
    usual = kinds.most_common(1)[0][0]
    if row["kind"] != usual:
        return [
            *checks,
            DriftCheck(name, "type_changed", None, None, True, detail=f"{usual} -> {row['kind']}"),
        ]
    same = [past for past in history if past["kind"] == usual]
    if usual == "categorical":
        checks.extend(_categories(name, row, same, settings))
    else:
        checks.append(_ks(name, row, same, settings))
    if row["mean_confidence"] is not None:
        checks.extend(_confidence(name, row, same, settings))
    return checks


def _present(row: Mapping[str, Any]) -> int:
    return int(row["count"]) - int(row["missing"])


def _missing_rate(name: str, row: Mapping[str, Any], history: list[Mapping[str, Any]],
                  settings: MonitoringSettings) -> DriftCheck:  # fmt: skip
    missing, count = int(row["missing"]), int(row["count"])
    base_missing = sum(int(past["missing"]) for past in history)
    base_count = sum(int(past["count"]) for past in history)
    before = base_missing / base_count if base_count else 0.0
    rate = missing / count if count else 0.0
    p_value = 1.0
    if count and base_count:
        table = [[missing, count - missing], [base_missing, base_count - base_missing]]
        p_value = float(sps.fisher_exact(table, alternative="greater").pvalue)
    increase = rate - before
    return DriftCheck(name, "missing_rate", increase, settings.min_missing_rate_increase,
                      increase >= settings.min_missing_rate_increase and p_value < settings.p_value,
                      p_value, f"{before:.0%} -> {rate:.0%} missing")  # fmt: skip


def _quantiles(row: Mapping[str, Any]) -> list[float] | None:
    stats = row["stats"] or {}
    return (stats.get("lengths") or {}).get("quantiles") if row["kind"] == "text" else stats.get("quantiles")


def quantile_cdf(quantiles: Sequence[float], points: np.ndarray) -> np.ndarray:
    """The CDF a run's stored quantiles describe, at ``points``: linear between quantiles, and a
    step where several quantiles share a value (a value many documents have)."""
    values = np.asarray(quantiles, dtype=float)
    probabilities = np.asarray(QUANTILE_PROBABILITIES, dtype=float)
    unique, last = np.unique(values[::-1], return_index=True)  # the highest probability of each value
    return np.interp(points, unique, probabilities[::-1][last], left=0.0, right=1.0)


def _ks(name: str, row: Mapping[str, Any], history: list[Mapping[str, Any]],
        settings: MonitoringSettings) -> DriftCheck:  # fmt: skip
    quantiles = _quantiles(row)
    past = [(q, _present(p)) for p in history if (q := _quantiles(p)) and _present(p)]
    n, m = _present(row), sum(weight for _, weight in past)
    if not quantiles or not n or not m:
        return DriftCheck(name, "ks", None, None, False, detail="no values to compare")
    points = np.unique(np.concatenate([quantiles, *[q for q, _ in past]]))
    baseline = sum(weight * quantile_cdf(q, points) for q, weight in past) / m
    distance = float(np.max(np.abs(quantile_cdf(quantiles, points) - baseline)))
    effective = max(1, round(n * m / (n + m)))
    critical = float(sps.kstwo.isf(settings.p_value, effective))
    p_value = float(sps.kstwo.sf(distance, effective))
    threshold = max(critical, settings.min_ks_statistic)
    what = "value lengths" if row["kind"] == "text" else f"{row['kind']} values"
    return DriftCheck(name, "ks", distance, threshold, distance > threshold, p_value,
                      f"{what}: median {np.median(quantiles):g} vs {_pooled_median(past):g}")  # fmt: skip


def _pooled_median(past: list[tuple[list[float], int]]) -> float:
    points = np.unique(np.concatenate([q for q, _ in past]))
    cdf = sum(weight * quantile_cdf(q, points) for q, weight in past) / sum(weight for _, weight in past)
    return float(points[np.searchsorted(cdf, 0.5)])


def _categories(name: str, row: Mapping[str, Any], history: list[Mapping[str, Any]],
                settings: MonitoringSettings) -> list[DriftCheck]:  # fmt: skip
    current = _frequencies(row)
    baseline: Counter[str] = Counter()
    for past in history:
        baseline.update(_frequencies(past))
    n, m = sum(current.values()), sum(baseline.values())
    if not n or not m:
        return []
    categories = sorted(set(current) | set(baseline))
    observed = np.array([[current[c] for c in categories], [baseline[c] for c in categories]], dtype=float)
    distance = float(jensenshannon(observed[0] / n, observed[1] / m, base=2))
    p_value = float(sps.chi2_contingency(observed).pvalue) if len(categories) > 1 else 1.0
    checks = [DriftCheck(name, "jensen_shannon", distance, settings.min_js_distance,
                         distance >= settings.min_js_distance and p_value < settings.p_value, p_value)]  # fmt: skip
    for category in categories:
        if category == OTHER:
            continue
        if not baseline[category]:
            share = current[category] / n
            chance = (1 - share) ** m  # never seen in m baseline values if it had been this common
            checks.append(DriftCheck(name, "new_category", share, None, chance < settings.p_value, chance,
                                     f"{category!r} in {current[category]} of {n}"))  # fmt: skip
        elif not current[category]:
            share = baseline[category] / m
            chance = (1 - share) ** n  # absent from n values by chance
            checks.append(DriftCheck(name, "vanished_category", share, None, chance < settings.p_value, chance,
                                     f"{category!r} was in {share:.0%} of baseline documents"))  # fmt: skip
    return checks


def _frequencies(row: Mapping[str, Any]) -> Counter[str]:
    stats = row["stats"] or {}
    counts = Counter({str(k): int(v) for k, v in (stats.get("frequencies") or {}).items()})
    if stats.get("other"):
        counts[OTHER] += int(stats["other"])
    return counts


def _confidence(name: str, row: Mapping[str, Any], history: list[Mapping[str, Any]],
                settings: MonitoringSettings) -> list[DriftCheck]:  # fmt: skip
    def spread(item: Mapping[str, Any]) -> tuple[float, float, int]:
        confidence = (item["stats"] or {}).get("confidence") or {}
        return (
            float(item["mean_confidence"]),
            float(confidence.get("std", 0.0)),
            int(confidence.get("count", 0)),
        )

    past = [spread(item) for item in history if item["mean_confidence"] is not None]
    past = [item for item in past if item[2]]
    mean, std, n = spread(row)
    m = sum(count for _, _, count in past)
    if not n or not m:
        return []
    pooled = sum(count * mu for mu, _, count in past) / m
    within = sum((count - 1) * sd**2 for _, sd, count in past)
    between = sum(count * (mu - pooled) ** 2 for mu, _, count in past)
    pooled_std = float(np.sqrt((within + between) / max(m - 1, 1)))
    drop = pooled - mean
    p_value = float(sps.ttest_ind_from_stats(mean, std, n, pooled, pooled_std, m, equal_var=False,
                                             alternative="less").pvalue)  # fmt: skip
    if np.isnan(p_value):  # no spread on either side: any fall is certain
        p_value = 0.0 if drop > 0 else 1.0
    return [DriftCheck(name, "confidence_drop", drop, settings.min_confidence_drop,
                       drop >= settings.min_confidence_drop and p_value < settings.p_value, p_value,
                       f"mean confidence {pooled:.2f} -> {mean:.2f}")]  # fmt: skip


def publish_drift(store: ObjectStore, reports_prefix: str, report: DriftReport) -> str:
    """Write the report to ``<reports>/<run_id>/drift.json``; returns its key."""
    key = f"{reports_prefix}/{report.run_id}/drift.json"
    store.put_bytes(key, report.to_json().encode(), content_type="application/json")
    return key
