"""The HTML run report shows every section, works offline, and never runs document-borne markup."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from mlops.quality.bias import BiasThresholds, check_bias
from mlops.reporting import RunSummary, render_html, summary_problems

EVIL = "<script>alert(1)</script>"
SECTIONS = ("Documents", "Extraction", "Validation", "Anomalies", "Bias", "Stage timings")


def full_summary() -> dict:
    return {
        "run_id": "manual__2026-02-01T10:00:00",
        "status": "success",
        "started_at": "2026-02-01T10:00:00+00:00",
        "finished_at": "2026-02-01T10:03:05+00:00",
        "documents": {
            "seen": 40,
            "new": 30,
            "skipped": 10,
            "accepted": 25,
            "quarantined": 3,
            "duplicates": 2,
        },
        "quarantine_reasons": {"corrupt": 2, "encrypted": 1},
        "extraction": {
            "documents": 25,
            "text_layer_pages": 31,
            "ocr_pages": 12,
            "accuracy": {
                "principal": {"text_layer": 0.98, "ocr": 0.81},
                "servicer": {"text_layer": 1.0, "ocr": 0.9},
            },
        },
        "validation": {"score": 0.93, "status": "warning", "thresholds": {"warn": 0.95, "fail": 0.8}},
        "anomalies": {"count": 2, "by_detector": {"iqr": 1, "isolation_forest": 1}},
        "bias": {"format": 0.33, "doc_type": 0.05, "servicer": None},
        "stage_seconds": {"acquire_documents": 1.2, "extract_data": 95.0, "report": 0.4},
    }


def full_details() -> dict:
    return {
        "failing_expectations": [
            {
                "type": "expect_column_values_to_be_between",
                "column": "interest_rate",
                "unexpected_percent": 4.0,
            }
        ],
        "findings": [
            {
                "sha256": "ab" * 32,
                "document": "note_17.pdf",
                "field": "principal",
                "value": EVIL,
                "detector": "iqr",
                "severity": "warning",
                "reason": "far above Q3",
            }
        ],
        "bias_flags": [
            "field_accuracy for format=jpeg is 0.62 vs 0.95 for format=pdf (difference 0.33 > 0.20)"
        ],
        "quarantined": [{"filename": f"{EVIL}.pdf", "reason": "corrupt", "detail": "truncated xref"}],
    }


@pytest.fixture(scope="module")
def report() -> str:
    return render_html(full_summary(), full_details())


def test_full_report_shows_run_status_sections_and_tables(report):
    assert "manual__2026-02-01T10:00:00" in report
    assert re.search(r'class="badge"[^>]*>success<', report)
    assert "took 3 min 5 s" in report
    for heading in SECTIONS:
        assert f"<h2>{heading}</h2>" in report
    assert "not run" not in report
    assert "expect_column_values_to_be_between" in report and "truncated xref" in report
    assert "note_17.pdf" in report and "far above Q3" in report
    assert "field_accuracy for format=jpeg is 0.62 vs 0.95 for format=pdf" in report
    assert "Not measurable (fewer than two groups large enough): servicer" in report
    # funnel, reasons, pages, accuracy, validation, anomalies, bias, stages
    assert report.count('class="plotly-graph-div"') == 8


def test_document_borne_markup_is_escaped_not_executed(report):
    assert EVIL not in report
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report


def test_plotly_js_is_inlined_once_and_nothing_is_fetched_from_the_internet(report):
    assert report.count(get_plotlyjs()[:200]) == 1
    assert not re.search(r"<script[^>]*\bsrc=", report)
    assert not re.search(r"<link[^>]*\bhref=[\"']?https?:", report)


def test_summary_missing_sections_renders_them_as_not_run():
    summary = {key: full_summary()[key] for key in ("run_id", "status", "started_at", "finished_at")}

    report = render_html(summary, {})

    for heading in SECTIONS:
        assert f"<h2>{heading}</h2>" in report
    assert report.count("not run") == len(SECTIONS)
    assert 'class="plotly-graph-div"' not in report
    assert report.count(get_plotlyjs()[:200]) == 1


def test_failed_run_gets_a_red_badge():
    report = render_html({**full_summary(), "status": "failed"}, {})

    assert re.search(r'class="badge" style="background: #c62828">failed<', report)


def test_run_summary_accepts_the_full_summary_and_rejects_one_without_documents():
    assert RunSummary.model_validate(full_summary()).documents.accepted == 25
    assert summary_problems(full_summary()) == []

    incomplete = {key: value for key, value in full_summary().items() if key != "documents"}

    assert summary_problems(incomplete) == ["documents: Field required"]
    with pytest.raises(ValueError, match="documents"):
        RunSummary.model_validate(incomplete)


def test_run_summary_rejects_wrong_types():
    broken = full_summary()
    broken["documents"] = {**broken["documents"], "accepted": "many"}
    broken["finished_at"] = "yesterday-ish"

    problems = summary_problems(broken)

    assert any(p.startswith("documents.accepted:") for p in problems)
    assert any(p.startswith("finished_at:") for p in problems)


def test_bias_check_output_feeds_the_report_with_its_own_threshold():
    rows = [{"format": "pdf", "completeness": 1.0}] * 3 + [{"format": "jpeg", "completeness": 0.85}] * 3
    result = check_bias(pd.DataFrame(rows), ["format"], BiasThresholds(max_difference=0.1))
    summary = {**full_summary(), "bias": result.max_disparity}

    report = render_html(
        summary, {"bias_flags": result.flags, "bias_thresholds": result.summary()["thresholds"]}
    )

    assert "completeness for format=jpeg is 0.85 vs 1.00 for format=pdf (difference 0.15 &gt; 0.10)" in report
    assert "max difference 0.1" in report
