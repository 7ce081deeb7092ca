"""IsolationForest in detect_anomalies: documents whose values each pass the rules and the robust
z-score but do not fit together (a payment that does not amortise the principal) are flagged,
with detector, score and threshold; too little history skips it and says why."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from mlops.config import IsolationForestSettings
from mlops.quality.anomalies import IsolationForestDetector, amortised_payment, detect_anomalies, load_rules

RULES = load_rules(Path(__file__).resolve().parents[2] / "config" / "anomaly_rules.yaml")


def loans(count: int, seed: int, prefix: str) -> pd.DataFrame:
    """Consistent disclosure statements: the payment amortises principal at the rate over the term."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "sha256": [f"{prefix}-{n}" for n in range(count)],
            "doc_type": "disclosure_statement",
            "principal": rng.lognormal(np.log(25_000), 0.5, count).round(-2),
            "interest_rate": rng.uniform(3.0, 8.0, count).round(2),
            "term_months": rng.choice([120, 180, 240, 300], count),
            "disbursement_date": "2020-09-01",
        }
    )
    payment = amortised_payment(frame["principal"], frame["interest_rate"], frame["term_months"])
    return frame.assign(
        monthly_payment=(payment * rng.uniform(0.99, 1.01, count)).round(2), run_id=f"run-{seed}"
    )


def history(runs: int = 8, per_run: int = 50) -> pd.DataFrame:
    return pd.concat([loans(per_run, seed, f"old{seed}") for seed in range(runs)], ignore_index=True)


def odd_batch() -> pd.DataFrame:
    """A run of ordinary loans plus three whose every value is ordinary but whose payment is not."""
    odd = pd.DataFrame(
        {
            "sha256": ["odd-double", "odd-third", "odd-long-term"],
            "doc_type": "disclosure_statement",
            "principal": [20_000.0, 60_000.0, 15_000.0],
            "interest_rate": [5.0, 6.0, 4.0],
            "term_months": [120, 300, 300],
            # amortised payments: 212, 387, 79
            "monthly_payment": [425.0, 130.0, 300.0],
            "disbursement_date": "2020-09-01",
        }
    )
    return pd.concat([loans(30, 99, "new"), odd], ignore_index=True)


def test_jointly_odd_documents_are_flagged_by_the_forest_alone():
    batch, past = odd_batch(), history()
    per_field = detect_anomalies(batch, past, RULES, as_of=date(2025, 6, 1))
    forest = IsolationForestDetector(IsolationForestSettings())

    findings = forest.detect(batch, past)

    odd = {"odd-double", "odd-third", "odd-long-term"}
    assert not odd & {f.sha256 for f in per_field}  # each value is within the rules and the robust z-score
    assert {f.sha256 for f in findings} == odd
    first = next(f for f in findings if f.sha256 == "odd-double")
    assert first.detector == "isolation_forest"
    assert f"above threshold {forest.window['threshold']:.3f}" in first.reason
    assert "(contamination 0.01, fitted on 400 rows of 8 earlier runs and 33 of this run)" in first.reason
    assert "most unusual: payment_ratio 2.0" in first.reason
    assert first.value.startswith(
        "principal 20000, interest_rate 5, term_months 120, monthly_payment 425, payment_ratio 2.003"
    )
    assert forest.window | {"settings": None} == {
        "detector": "isolation_forest", "trained": True, "history_rows": 400, "batch_rows": 33,
        "settings": None, "threshold": forest.window["threshold"], "run_ids": [f"run-{seed}" for seed in range(8)],
    }  # fmt: skip


def test_the_same_history_gives_the_same_scores():
    batch = odd_batch()
    first = IsolationForestDetector(IsolationForestSettings()).detect(batch, history())
    again = IsolationForestDetector(IsolationForestSettings()).detect(batch, history())
    assert [f.reason for f in first] == [f.reason for f in again]


def test_too_little_history_skips_the_forest_and_says_why():
    past = history(runs=3)  # 150 complete rows
    past.loc[:9, "term_months"] = None  # not scorable: not counted
    forest = IsolationForestDetector(IsolationForestSettings())

    assert forest.detect(odd_batch(), past) == []
    assert forest.window["trained"] is False
    assert forest.window["skipped"] == (
        "140 stored extractions of earlier runs have every numeric field, 200 needed "
        "(anomalies.isolation_forest.min_history_rows)"
    )
