"""The GX extraction gate: the suite file, scores, critical expectations, statuses and row tracing
(no services)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from mlops.errors import ConfigError
from mlops.models import (
    DOCUMENT_TYPES,
    FIELD_NAMES,
    REQUIRED_FIELDS,
    UNKNOWN_DOCUMENT_TYPE,
    DocumentRecord,
    Extraction,
    FieldValue,
)
from mlops.quality.expectations import (
    GateThresholds,
    QualityStatus,
    load_suite,
    validate_extractions,
)
from mlops.run_summary import build_summary
from mlops.stages import StageContext, open_context, validate_extraction
from tests.fixtures.platform import platform_settings

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


def blank(frame: pd.DataFrame, fields, rows=slice(None)) -> pd.DataFrame:
    """The frame with ``fields`` missing in ``rows``, as Extraction.row() writes a missing field."""
    selected = frame.index.isin(frame.loc[rows].index)
    frame = frame.copy()
    for field in fields:
        frame[field] = frame[field].mask(selected)
        frame.loc[selected, f"{field}_confidence"] = 0.0
    return frame


def completeness(field: str, doc_type: str) -> str:
    return f"expect_column_values_to_not_be_null({field}) where doc_type == {doc_type} [critical]"


KNOWN_TYPE = "expect_column_values_to_be_in_set(doc_type) [critical]"
MEAN_CONFIDENCE = "expect_column_mean_to_be_between(mean_field_confidence) [critical]"


def failed(result) -> set[tuple[str, str | None]]:
    return {(outcome.type, outcome.column) for outcome in result.failed_expectations()}


def stage_context(tmp_path: Path, **settings) -> StageContext:
    """A run on the embedded default (local directory + SQLite) under tmp_path."""
    return open_context("run-1", platform_settings(tmp_path, **settings), as_of=AS_OF)


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
    assert set(doc_types.value_set) == {*DOCUMENT_TYPES, UNKNOWN_DOCUMENT_TYPE}
    # the hand-written checks are scored; only generated ones decide the run on their own
    assert {e.severity for e in suite.expectations} == {"warning"}


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
    assert clean_result.critical_failures == []
    # one completeness check per (type, field it carries), the known-type share, the mean confidence
    assert clean_result.critical_expectations == sum(map(len, REQUIRED_FIELDS.values())) + 2
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
    assert bad_result.score == pytest.approx(18 / 24)
    assert bad_result.status is QualityStatus.FAILED
    # 8 missing account numbers leave two types (7 documents each) at 5/7 < 80% complete
    assert bad_result.critical_failures == [
        completeness("account_number", "billing_statement"),
        completeness("account_number", "deferment_forbearance_request"),
    ]
    nulls = next(o for o in bad_result.expectations if o.column == "account_number")
    assert nulls.unexpected_count == 8 and nulls.unexpected_percent == pytest.approx(20.0)


def test_bad_rows_are_traced_to_their_documents(bad_result):
    failing = bad_result.failing_rows
    assert failing[sha(3)] == ["expect_column_values_to_be_between(interest_rate)"]
    assert failing[sha(5)] == ["expect_column_values_to_be_between(principal)"]
    assert failing[sha(7)] == ["expect_column_values_to_match_regex(disbursement_date)"]
    assert failing[sha(9)] == ["expect_column_values_to_be_in_set(doc_type)", KNOWN_TYPE]
    assert failing[sha(11)] == ["expect_column_values_to_be_between(disbursement_year)"]
    assert all(
        failing[sha(i)][0] == "expect_column_values_to_not_be_null(account_number)" for i in range(20, 28)
    )
    assert failing[sha(20)][1:] == [completeness("account_number", "billing_statement")]
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
    by_suite = {page.relative_to(tmp_path / "docs" / "validations").parts[0]: page.read_text() for page in pages}
    assert set(by_suite) == {"extractions", "extractions_critical"}
    assert "interest_rate" in by_suite["extractions"]
    assert "doc_type == billing_statement" in by_suite["extractions_critical"]
    assert "mean_field_confidence" in by_suite["extractions_critical"]


def test_most_fields_missing_fails_on_completeness_whatever_the_score():
    """Unfamiliar layouts: the classifier still types the documents, the fields come back empty.
    Nulls break few value checks, so the score alone would pass this batch."""
    missing = [field for field in FIELD_NAMES if field != "borrower_name"]

    result = validate_extractions(blank(clean_frame(), missing), SUITE, as_of=AS_OF)

    assert result.score >= GateThresholds().passed
    assert result.status is QualityStatus.FAILED
    assert set(result.critical_failures) == {
        completeness(field, doc_type)
        for doc_type, fields in REQUIRED_FIELDS.items()
        for field in fields
        if field in missing
    }
    # the one field left keeps its confidence: absent fields do not drag the mean down
    assert MEAN_CONFIDENCE not in result.critical_failures
    assert result.summary()["critical_failures"] == result.critical_failures


def test_fields_a_document_type_does_not_carry_may_be_missing():
    frame = clean_frame()
    enrollment = frame["doc_type"] == "enrollment_verification"
    absent = set(FIELD_NAMES) - set(REQUIRED_FIELDS["enrollment_verification"])

    result = validate_extractions(blank(frame, absent, enrollment), SUITE, as_of=AS_OF)

    assert result.status is QualityStatus.PASSED and result.critical_failures == []


def test_a_batch_of_mostly_unknown_documents_fails():
    frame = clean_frame()
    frame.loc[0:14, "doc_type"] = UNKNOWN_DOCUMENT_TYPE
    frame.loc[15:29, "doc_type"] = None  # older extractors leave it null: the same answer

    result = validate_extractions(frame, SUITE, as_of=AS_OF)

    assert result.status is QualityStatus.FAILED
    assert result.critical_failures == [KNOWN_TYPE]
    assert result.score == 1.0  # "unknown" is a legitimate answer of the classifier
    known = next(o for o in result.expectations if o.label == KNOWN_TYPE)
    assert known.unexpected_count == 30
    assert result.failing_rows[sha(0)] == [KNOWN_TYPE] and result.failing_rows[sha(20)] == [KNOWN_TYPE]


def test_a_few_unknown_documents_are_tolerated():
    frame = clean_frame()
    frame.loc[0:3, "doc_type"] = UNKNOWN_DOCUMENT_TYPE  # 10% of the batch

    result = validate_extractions(frame, SUITE, as_of=AS_OF)

    assert result.status is QualityStatus.PASSED and result.row_pass[sha(0)] is False


@pytest.mark.parametrize(("minimum", "status"), [(0.6, QualityStatus.FAILED), (0.3, QualityStatus.PASSED)])
def test_low_mean_field_confidence_fails_below_the_configured_minimum(minimum, status):
    frame = clean_frame()
    for field in FIELD_NAMES:
        frame[f"{field}_confidence"] = 0.4

    result = validate_extractions(
        frame, SUITE, thresholds=GateThresholds(min_mean_confidence=minimum), as_of=AS_OF
    )

    assert result.status is status
    confidence = next(o for o in result.expectations if o.label == MEAN_CONFIDENCE)
    assert confidence.observed_value == pytest.approx(0.4)
    assert result.critical_failures == ([MEAN_CONFIDENCE] if status is QualityStatus.FAILED else [])


def test_the_stage_reads_the_minimums_from_the_settings_and_names_critical_failures(tmp_path):
    ctx = stage_context(tmp_path, quality={"data_docs": False, "min_mean_confidence": 0.95})
    ctx.catalog.save_table("extract_data/part-0000", clean_frame())  # confidences are 0.93

    summary = validate_extraction.run(ctx)

    assert summary["status"] == "FAILED" and summary["critical_failures"] == [MEAN_CONFIDENCE]
    saved = ctx.catalog.load_json("validate_extraction/result")
    assert saved["critical_failures"] == [MEAN_CONFIDENCE]
    assert saved["thresholds"]["min_mean_confidence"] == 0.95
    assert {"score", "status", "thresholds", "row_pass", "expectations"} <= set(saved)
    run_summary = build_summary(ctx)  # what run_summary.json will say
    assert run_summary["status"] == "failed"
    assert run_summary["validation"]["critical_failures"] == [MEAN_CONFIDENCE]


def test_the_stage_publishes_every_expectation_on_a_page_that_needs_no_internet(tmp_path):
    ctx = stage_context(tmp_path, quality={"data_docs": False})
    frame = clean_frame(10)
    frame.loc[3, "interest_rate"] = 48.0
    document = DocumentRecord(
        sha256=sha(3), source_key="landing/a.pdf", original_filename="statement-march.pdf",
        size_bytes=10, raw_key=f"raw/{sha(3)}",
    )  # fmt: skip
    ctx.metadata.register_document(document, ctx.run_id)
    ctx.catalog.save_table("extract_data/part-0000", frame)

    validate_extraction.run(ctx)

    saved = ctx.catalog.load_json("validate_extraction/result")
    assert saved["gx_data_docs"] is None
    page = ctx.store.get_bytes(f"{ctx.settings.prefixes.reports}/{ctx.run_id}/validation.html").decode()
    assert saved["data_docs"] == ctx.store.uri(f"{ctx.settings.prefixes.reports}/{ctx.run_id}/validation.html")
    assert "Validation of run run-1" in page and "the extractions of run run-1 (10 documents)" in page
    failed = page[page.index('id="failed"') : page.index('id="passed"')]
    assert "expect_column_values_to_be_between" in failed and "interest_rate" in failed
    assert "statement-march.pdf" in failed and "1 row (10.0%)" in failed
    passed = page[page.index('id="passed"') :]
    assert "doc_type == billing_statement [critical]" in passed
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing loaded from elsewhere
