"""Anomaly detectors: rule findings, the run-date window, robust z-scores and the rules file."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.errors import ConfigError
from mlops.models import FIELD_NAMES
from mlops.quality.anomalies import (
    AnomalyRules,
    RuleDetector,
    StatisticalConfig,
    StatisticalDetector,
    detect_anomalies,
    load_rules,
)

RULES_FILE = Path(__file__).resolve().parents[2] / "config" / "anomaly_rules.yaml"
AS_OF = date(2025, 6, 1)


@pytest.fixture(scope="module")
def rules() -> AnomalyRules:
    return load_rules(RULES_FILE)


def document(sha: str, **overrides) -> dict:
    """One complete, plausible billing statement row; overrides inject the anomaly."""
    row: dict = {"sha256": sha, "doc_type": "billing_statement"}
    row |= {
        "borrower_name": "Jane Roe",
        "account_number": "1234567",
        "servicer": "Nelnet",
        "principal": 24000.0,
        "interest_rate": 5.5,
        "disbursement_date": "2019-08-15",
        "term_months": 120,
        "monthly_payment": 260.0,
    }
    return row | overrides


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=["sha256", "doc_type", *FIELD_NAMES])


def only(findings, sha):
    return [(f.field, f.value, f.severity) for f in findings if f.sha256 == sha]


def test_the_shipped_rules_file_is_valid(rules):
    assert {rule.field for rule in rules.ranges} == {
        "principal",
        "interest_rate",
        "term_months",
        "monthly_payment",
    }
    assert rules.dates[0].field == "disbursement_date"
    assert "monthly_payment" in rules.required.by_doc_type["billing_statement"]


def test_a_clean_document_has_no_findings(rules):
    assert RuleDetector(rules).detect(frame(document("ok")), AS_OF) == []


def test_range_rules_name_field_value_rule_and_limit(rules):
    findings = RuleDetector(rules).detect(
        frame(
            document("rate", interest_rate=48.0),
            document("negative", principal=-2500.0),
            document("term", term_months=480),
            document("federal", interest_rate=14.0),
        ),
        AS_OF,
    )
    by_sha = {f.sha256: f for f in findings}

    assert len(findings) == 4  # one finding per breached field: 48% is critical, not also warning
    assert (by_sha["rate"].field, by_sha["rate"].value, by_sha["rate"].severity) == (
        "interest_rate",
        "48",
        "critical",
    )
    assert by_sha["rate"].reason == "rule interest_rate_plausible: interest_rate 48 is above the maximum 20"
    assert by_sha["negative"].reason == "rule principal_not_negative: principal -2500 is below the minimum 0"
    assert "term_plausible" in by_sha["term"].reason and "360" in by_sha["term"].reason
    assert (by_sha["federal"].severity, by_sha["federal"].detector) == ("warning", "rules")
    assert "interest_rate_federal" in by_sha["federal"].reason and "12" in by_sha["federal"].reason


def test_future_date_rule_is_relative_to_as_of(rules):
    batch = frame(
        document("soon", disbursement_date="2025-07-15"), document("far", disbursement_date="2027-01-10")
    )

    findings = RuleDetector(rules).detect(batch, as_of=AS_OF)
    in_2027 = RuleDetector(rules).detect(batch, as_of=date(2027, 1, 1))

    assert [(f.sha256, f.field, f.value) for f in findings] == [("far", "disbursement_date", "2027-01-10")]
    assert "90 days after the run date 2025-06-01" in findings[0].reason
    assert "disbursement_date_window" in findings[0].reason
    assert in_2027 == []


def test_old_and_malformed_dates(rules):
    findings = RuleDetector(rules).detect(
        frame(
            document("old", disbursement_date="1958-02-01"), document("us", disbursement_date="03/15/2019")
        ),
        AS_OF,
    )

    reasons = {f.sha256: f.reason for f in findings}
    assert "is before 1965-01-01" in reasons["old"]
    assert "not an ISO yyyy-mm-dd date" in reasons["us"]


def test_required_fields_per_doc_type(rules):
    findings = RuleDetector(rules).detect(
        frame(
            document("bill", monthly_payment=None, account_number=None),
            document("note", doc_type="master_promissory_note", monthly_payment=None, account_number=None),
        ),
        AS_OF,
    )

    assert sorted(only(findings, "bill")) == [
        ("account_number", None, "warning"),
        ("monthly_payment", None, "warning"),
    ]
    assert only(findings, "note") == []  # a promissory note has no payment yet
    assert any(
        f.reason == "rule required.billing_statement: a billing_statement must have monthly_payment; "
        "it is missing"
        for f in findings
    )


def history_of(field: str, values) -> pd.DataFrame:
    return pd.DataFrame({field: values})


def test_robust_zscore_flags_an_outlier_and_not_normal_values():
    rng = np.random.default_rng(7)
    history = history_of("principal", rng.normal(30000, 6000, 200).round(2))
    batch = frame(
        document("normal-1", principal=31000.0),
        document("normal-2", principal=18000.0),
        document("outlier", principal=180000.0),  # inside the hard limit, far from every loan seen
    )

    findings = StatisticalDetector().detect(batch, history)

    assert [(f.sha256, f.field, f.value, f.detector) for f in findings] == [
        ("outlier", "principal", "180000", "robust_zscore")
    ]
    assert "robust z-score" in findings[0].reason and "203 reference values" in findings[0].reason


def test_mad_zero_falls_back_to_mean_absolute_deviation():
    history = history_of("term_months", [120] * 30 + [240] * 4)
    batch = frame(document("standard", term_months=120), document("odd", term_months=3600))

    findings = StatisticalDetector().detect(batch, history)

    assert [(f.sha256, f.value) for f in findings] == [("odd", "3600")]
    assert "MAD 0" in findings[0].reason


def test_identical_values_give_no_findings():
    history = history_of("term_months", [120] * 30)
    assert StatisticalDetector().detect(frame(document("a"), document("b")), history) == []


def test_too_little_history_is_skipped():
    history = history_of("principal", [20000.0, 21000.0, 22000.0])
    batch = frame(document("a"), document("huge", principal=400000.0))

    assert StatisticalDetector().detect(batch, history) == []
    assert StatisticalDetector().detect(batch, None) == []
    tolerant = StatisticalDetector(StatisticalConfig(fields=["principal"], min_history=5))
    assert [f.sha256 for f in tolerant.detect(batch, history)] == ["huge"]


def test_detect_anomalies_runs_both_detectors(rules):
    rng = np.random.default_rng(3)
    history = pd.DataFrame({"interest_rate": rng.normal(5.0, 0.8, 100).round(2)})
    batch = frame(document("ok"), document("rate", interest_rate=48.0))

    findings = detect_anomalies(batch, history, rules, AS_OF)

    assert {(f.sha256, f.field, f.detector) for f in findings} == {
        ("rate", "interest_rate", "rules"),
        ("rate", "interest_rate", "robust_zscore"),
    }
    assert all(f.reason for f in findings)
    assert detect_anomalies(batch.iloc[0:0], history, rules, AS_OF) == []


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("ranges:\n  - {name: r, field: principal, min: 10, max: 1}\n", r"ranges\[0\].*min 10.0 > max 1.0"),
        (
            "ranges:\n  - {name: r, field: borrower_name, max: 1}\n",
            r"ranges\[0\]\.field.*not a numeric field",
        ),
        ("ranges:\n  - {name: r, field: principal, maximum: 1}\n", r"ranges\[0\]\.maximum: Extra inputs"),
        ("required:\n  by_doc_type: {tax_return: [principal]}\n", r"required\.by_doc_type.*tax_return"),
        ("statistical: {threshold: -1}\n", r"statistical\.threshold"),
        ("dates: [oops\n", r"cannot read anomaly rules"),
    ],
)
def test_a_bad_rules_file_names_the_key(tmp_path, text, names):
    path = tmp_path / "rules.yaml"
    path.write_text(text)

    with pytest.raises(ConfigError, match=names):
        load_rules(path)
