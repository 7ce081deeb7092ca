"""Drift of a run against its baseline, from stored field statistics: clean reseeded corpora pass,
a shifted principal, degraded scans, schema changes and new categories are flagged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlops.config import MonitoringSettings
from mlops.monitoring.drift import DRIFT, NO_DRIFT, NOT_ENOUGH_HISTORY, compare, quantile_cdf, select_baseline
from mlops.monitoring.statistics import QUANTILE_PROBABILITIES, field_statistics
from tests.unit.labelled_tables import degraded, labelled_table

SETTINGS = MonitoringSettings()


def statistics(frame):
    return field_statistics(frame, categorical_fields=SETTINGS.categorical_fields)


@pytest.fixture(scope="module")
def baseline() -> dict[str, list[dict]]:
    return {f"clean-{seed}": statistics(labelled_table(seed)) for seed in range(1, 6)}


def drifted(report) -> set[tuple[str, str]]:
    return {(check.field, check.statistic) for check in report.drifted()}


@pytest.mark.parametrize("seed", [6, 7, 8, 9])
def test_a_reseeded_clean_corpus_does_not_drift(baseline, seed):
    report = compare("clean", statistics(labelled_table(seed)), baseline, SETTINGS)
    assert report.verdict == NO_DRIFT, [check.line() for check in report.drifted()]
    assert report.headline().startswith("NO DRIFT in run clean: ")


def test_a_shifted_principal_is_flagged_by_ks_and_nothing_else(baseline):
    frame = labelled_table(6)
    frame["principal"] = frame["principal"] * 3

    report = compare("shifted", statistics(frame), baseline, SETTINGS)

    assert report.verdict == DRIFT
    assert drifted(report) == {("principal", "ks")}
    top = report.drifted()[0]
    assert top.value > top.threshold >= SETTINGS.min_ks_statistic and top.p_value < SETTINGS.p_value
    assert report.headline() == "DRIFT in run shifted: 1 field drifted against 5 baseline runs: principal"


def test_degraded_scans_are_flagged_by_missing_rates_confidence_and_ocr_confidence(baseline):
    report = compare("blurred", statistics(degraded(labelled_table(7))), baseline, SETTINGS)

    assert report.verdict == DRIFT
    found = drifted(report)
    assert ("ocr_confidence", "ks") in found
    assert {("borrower_name", "missing_rate"), ("account_number", "missing_rate")} <= found
    assert {("principal", "confidence_drop"), ("borrower_name", "confidence_drop")} <= found


def test_schema_changes_are_drift(baseline):
    frame = labelled_table(6).drop(columns=["servicer", "servicer_confidence"])
    frame["loan_status"] = "repayment"
    frame["principal"] = frame["principal"].map(lambda value: None if pd.isna(value) else f"${value:,.2f}")

    report = compare("schema", statistics(frame), baseline, SETTINGS)

    assert {("servicer", "field_disappeared"), ("loan_status", "field_appeared"),
            ("principal", "type_changed")} <= drifted(report)  # fmt: skip
    assert next(c for c in report.checks if c.statistic == "type_changed").detail == "numeric -> text"


def test_a_common_new_category_and_a_vanished_one_are_drift_a_rare_new_one_is_not(baseline):
    frame = labelled_table(6, count=48)
    frame.loc[frame.index[:20], "servicer"] = "Acme Loan Servicing"
    frame.loc[frame.index[-1], "doc_type"] = "tuition_invoice"
    frame.loc[frame["doc_type"] == "billing_statement", "doc_type"] = "disclosure_statement"

    report = compare("categories", statistics(frame), baseline, SETTINGS)
    checks = {
        (c.field, c.statistic, c.detail.split("'")[1]): c for c in report.checks if "category" in c.statistic
    }

    assert checks["servicer", "new_category", "Acme Loan Servicing"].drifted
    assert checks["doc_type", "vanished_category", "billing_statement"].drifted
    assert not checks["doc_type", "new_category", "tuition_invoice"].drifted  # one document in 46: chance
    assert ("servicer", "jensen_shannon") in drifted(report)


def test_too_few_good_runs_is_not_enough_history(baseline):
    two = dict(list(baseline.items())[:2])
    report = compare("early", statistics(labelled_table(6)), two, SETTINGS)
    assert report.verdict == NOT_ENOUGH_HISTORY and report.checks == []
    assert report.headline() == ("NOT ENOUGH HISTORY for run early: 2 baseline runs with field statistics, "
                                 "3 needed (monitoring.min_baseline_runs)")  # fmt: skip


def test_ks_from_stored_quantiles_agrees_with_scipy_on_the_raw_samples():
    rng = np.random.default_rng(3)
    for shift in (0.0, 0.5, 1.0):
        a, b = rng.normal(0, 1, 200), rng.normal(shift, 1, 300)
        points = np.unique(np.concatenate([a, b]))
        ours = np.max(np.abs(quantile_cdf(np.quantile(a, QUANTILE_PROBABILITIES), points)
                             - quantile_cdf(np.quantile(b, QUANTILE_PROBABILITIES), points)))  # fmt: skip
        assert ours == pytest.approx(stats.ks_2samp(a, b).statistic, abs=0.05)


def test_a_value_most_documents_share_is_a_step_of_the_cdf():
    quantiles = np.quantile([120.0] * 8 + [240.0] * 2, QUANTILE_PROBABILITIES)
    assert list(quantile_cdf(quantiles, np.array([119.0, 120.0, 239.0, 240.0]))) == pytest.approx(
        [0, 0.8, 1.0, 1.0], abs=0.06
    )


def test_the_baseline_is_the_last_good_completed_runs_with_statistics_before_the_run():
    def run(run_id, outcome="completed", verdict="passed"):
        return {"run_id": run_id, "outcome": outcome, "verdict": verdict}

    runs = [run("a"), run("b", verdict="failed"), run("c", outcome="abandoned", verdict=None), run("d"),
            run("e", verdict="warning"), run("f"), run("current"), run("later")]  # fmt: skip
    with_statistics = {"a", "b", "c", "e", "f", "current", "later"}

    assert select_baseline(runs, "current", with_statistics, SETTINGS) == ["a", "e", "f"]
    assert select_baseline(runs, "current", with_statistics, SETTINGS, limit=2) == ["e", "f"]
    lenient = MonitoringSettings(baseline_verdicts=["passed", "warning", "failed"])
    assert select_baseline(runs, "current", with_statistics, lenient) == ["a", "b", "e", "f"]
