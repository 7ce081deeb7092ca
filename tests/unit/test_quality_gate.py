"""The GX extraction gate: the suite file, scores, statuses and row tracing (no services)."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from mlops.errors import ConfigError
from mlops.models import DOCUMENT_TYPES, Extraction, FieldValue
from mlops.quality.expectations import (
    GateThresholds,
    QualityStatus,
    load_suite,
    validate_extractions,
)

SUITE = Path(__file__).resolve().parents[2] / "config" / "expectations" / "extractions.json"
AS_OF = date(2025, 6, 1)


def sha(i: int) -> str:
    return hashlib.sha256(f"doc-{i}".encode()).hexdigest()


def clean_frame(n: int = 40) -> pd.DataFrame:
    """Plausible extractions built through the real model, so columns match Extraction.row()."""
    rows = []
    for i in range(n):
        values = {
            "borrower_name": f"Borrower {i}",
            "account_number": f"{1000000 + i}",
            "servicer": ["Nelnet", "MOHELA", "Aidvantage"][i % 3],
            "principal": 5000.0 + 700 * i,
            "interest_rate": 3.5 + (i % 7) * 0.5,
            "disbursement_date": f"{2010 + i % 14}-0{1 + i % 9}-15",
            "term_months": [120, 240, 300][i % 3],
            "monthly_payment": 80.0 + 9 * i,
        }
        extraction = Extraction(
            sha256=sha(i),
            extractor="rules-v1",
            doc_type=DOCUMENT_TYPES[i % len(DOCUMENT_TYPES)],
            doc_type_confidence=0.9,
            text_source="text_layer" if i % 2 else "ocr",
            pages=2,
            text_layer_pages=2 if i % 2 else 0,
            ocr_pages=0 if i % 2 else 2,
            ocr_confidence=None if i % 2 else 0.88,
            fields={
                name: FieldValue(value=value, raw=str(value), confidence=0.93)
                for name, value in values.items()
            },
        )
        rows.append(extraction.row())
    return pd.DataFrame(rows)


def failed(result) -> set[tuple[str, str | None]]:
    return {(outcome.type, outcome.column) for outcome in result.failed_expectations()}


@pytest.fixture(scope="module")
def clean_result():
    return validate_extractions(clean_frame(), SUITE, thresholds=GateThresholds(), as_of=AS_OF)


@pytest.fixture(scope="module")
def bad_result():
    frame = clean_frame()
    frame.loc[3, "interest_rate"] = 48.0
    frame.loc[5, "principal"] = -2500.0
    frame.loc[7, "disbursement_date"] = "03/15/2019"
    frame.loc[9, "doc_type"] = "tax_return"
    frame.loc[11, "disbursement_date"] = "2041-09-01"
    frame.loc[20:27, "account_number"] = None  # 8 of 40 rows: 20% null, over the 10% tolerance
    return validate_extractions(frame, SUITE, thresholds=GateThresholds(), as_of=AS_OF)


def test_suite_file_is_gx_json_with_the_expected_checks():
    suite = load_suite(SUITE)
    checks = {(e.expectation_type, getattr(e, "column", None)) for e in suite.expectations}

    assert suite.name == "extractions"
    assert 15 <= len(suite.expectations) <= 25
    assert {
        ("expect_column_values_to_be_unique", "sha256"),
        ("expect_column_values_to_match_regex", "sha256"),
        ("expect_column_values_to_be_in_set", "doc_type"),
        ("expect_column_values_to_be_between", "interest_rate"),
        ("expect_column_values_to_be_between", "principal"),
        ("expect_column_values_to_be_between", "term_months"),
        ("expect_column_values_to_match_regex", "disbursement_date"),
        ("expect_column_values_to_not_be_null", "account_number"),
    } <= checks
    doc_types = next(
        e for e in suite.expectations if getattr(e, "column", None) == "doc_type" and hasattr(e, "value_set")
    )
    assert set(doc_types.value_set) == set(DOCUMENT_TYPES)


def test_a_bad_expectation_in_the_suite_file_is_a_clear_error(tmp_path):
    data = json.loads(SUITE.read_text())
    data["expectations"].append({"type": "expect_column_values_to_be_betwen", "kwargs": {"column": "x"}})
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))

    with pytest.raises(ConfigError, match=r"expectation #\d+ \(expect_column_values_to_be_betwen\)"):
        load_suite(broken)


def test_clean_extractions_pass(clean_result):
    assert clean_result.status is QualityStatus.PASSED
    assert clean_result.score == 1.0
    assert clean_result.rows == 40
    assert clean_result.failing_rows == {}
    assert all(clean_result.row_pass.values()) and len(clean_result.row_pass) == 40


def test_bad_rows_fail_the_right_expectations(bad_result):
    assert failed(bad_result) == {
        ("expect_column_values_to_be_between", "interest_rate"),
        ("expect_column_values_to_be_between", "principal"),
        ("expect_column_values_to_match_regex", "disbursement_date"),
        ("expect_column_values_to_be_between", "disbursement_year"),
        ("expect_column_values_to_be_in_set", "doc_type"),
        ("expect_column_values_to_not_be_null", "account_number"),
    }
    assert bad_result.score == pytest.approx(19 / 25)
    assert bad_result.status is QualityStatus.FAILED
    nulls = next(o for o in bad_result.expectations if o.column == "account_number")
    assert nulls.unexpected_count == 8 and nulls.unexpected_percent == pytest.approx(20.0)


def test_bad_rows_are_traced_to_their_documents(bad_result):
    failing = bad_result.failing_rows
    assert failing[sha(3)] == ["expect_column_values_to_be_between(interest_rate)"]
    assert failing[sha(5)] == ["expect_column_values_to_be_between(principal)"]
    assert failing[sha(7)] == ["expect_column_values_to_match_regex(disbursement_date)"]
    assert failing[sha(9)] == ["expect_column_values_to_be_in_set(doc_type)"]
    assert failing[sha(11)] == ["expect_column_values_to_be_between(disbursement_year)"]
    assert all(
        failing[sha(i)] == ["expect_column_values_to_not_be_null(account_number)"] for i in range(20, 28)
    )
    assert set(failing) == {sha(i) for i in (3, 5, 7, 9, 11, *range(20, 28))}
    assert bad_result.row_pass[sha(0)] is True and bad_result.row_pass[sha(3)] is False
    assert bad_result.summary()["row_pass_rate"] == pytest.approx(27 / 40)


def test_summary_is_json(bad_result):
    summary = json.loads(json.dumps(bad_result.summary()))
    assert summary["status"] == "FAILED"
    assert summary["failing_rows"][sha(3)] == ["expect_column_values_to_be_between(interest_rate)"]


def test_a_tolerated_breach_still_marks_the_row():
    frame = clean_frame()
    frame.loc[0, "borrower_name"] = None  # 1 of 40 null: inside mostly=0.9

    result = validate_extractions(frame, SUITE, thresholds=GateThresholds(), as_of=AS_OF)

    assert result.status is QualityStatus.PASSED and result.score == 1.0
    assert result.row_pass[sha(0)] is False


@pytest.mark.parametrize(
    ("broken_rows", "status"),
    [(1, QualityStatus.PASSED), (2, QualityStatus.WARNING), (3, QualityStatus.FAILED)],
)
def test_failed_expectations_map_to_status(broken_rows, status):
    frame = clean_frame()
    breakages = [("interest_rate", 48.0), ("principal", -1.0), ("term_months", 999)]
    for row, (column, value) in enumerate(breakages[:broken_rows]):
        frame.loc[row, column] = value

    result = validate_extractions(frame, SUITE, thresholds=GateThresholds(), as_of=AS_OF)

    assert len(result.failed_expectations()) == broken_rows
    assert result.status is status


def test_thresholds_map_scores():
    strict = GateThresholds(passed=0.99, warning=0.97)
    assert strict.status_for(0.99) is QualityStatus.PASSED
    assert strict.status_for(0.98) is QualityStatus.WARNING
    assert strict.status_for(0.96) is QualityStatus.FAILED
    assert GateThresholds().status_for(0.95) is QualityStatus.PASSED
    assert GateThresholds().status_for(0.90) is QualityStatus.WARNING
    assert GateThresholds().status_for(0.899) is QualityStatus.FAILED


@pytest.mark.parametrize(("passed", "warning"), [(0.9, 0.95), (1.2, 0.9), (0.9, -0.1)])
def test_thresholds_out_of_order_are_rejected(passed, warning):
    with pytest.raises(ValueError, match="warning <= passed"):
        GateThresholds(passed=passed, warning=warning)


def test_future_years_pass_without_a_run_date():
    frame = clean_frame()
    frame.loc[0, "disbursement_date"] = "2041-09-01"

    assert validate_extractions(frame, SUITE, thresholds=GateThresholds()).failing_rows == {}


def test_empty_frame_is_nothing_to_validate():
    for frame in (pd.DataFrame(), clean_frame().iloc[0:0]):
        result = validate_extractions(frame, SUITE, thresholds=GateThresholds())
        assert (result.status, result.score, result.rows) == (QualityStatus.PASSED, 1.0, 0)
        assert result.failing_rows == {} and result.expectations == []


def test_data_docs_are_built(tmp_path):
    frame = clean_frame(10)
    frame.loc[0, "interest_rate"] = 48.0

    result = validate_extractions(
        frame, SUITE, thresholds=GateThresholds(), data_docs_dir=tmp_path / "docs", as_of=AS_OF
    )

    assert result.data_docs_index == (tmp_path / "docs" / "index.html").resolve()
    assert "extractions" in result.data_docs_index.read_text()
    pages = list((tmp_path / "docs" / "validations").rglob("*.html"))
    assert len(pages) == 1 and "interest_rate" in pages[0].read_text()
