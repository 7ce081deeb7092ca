"""The bias check flags slices whose extraction quality lags, and only those; the check_bias stage
measures accuracy per slice from labels, and finishes without it when it cannot read them."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from mlops.models import FIELD_NAMES, REQUIRED_FIELDS
from mlops.quality.bias import BiasThresholds, check_bias, page_bucket, scan_quality_bucket
from mlops.stages import StageContext
from mlops.stages import check_bias as check_bias_stage
from tests.unit.test_quality_gate import clean_frame, stage_context


def document(format: str = "pdf", accuracy: float = 0.95, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "doc_type": "billing_statement",
        "servicer": "Nelnet",
        "format": format,
        "page_bucket": "1",
        "scan_quality": "text_layer" if format == "pdf" else "fair",
        "completeness": 1.0,
        "mean_confidence": 0.9,
        "validation_pass": True,
        "field_accuracy": accuracy,
    }
    row.update(overrides)
    return row


def frame(*groups: tuple[int, dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame([document(**kwargs) for count, kwargs in groups for _ in range(count)])


def test_jpeg_accuracy_far_below_pdf_is_flagged_with_difference_ratio_and_sentence():
    data = frame((5, {"format": "pdf", "accuracy": 0.95}), (5, {"format": "jpeg", "accuracy": 0.62}))

    result = check_bias(data, ["format"])

    accuracy = result.summary()["dimensions"]["format"]["metrics"]["field_accuracy"]
    assert accuracy["by_group"] == {"jpeg": pytest.approx(0.62), "pdf": pytest.approx(0.95)}
    assert accuracy["difference"] == pytest.approx(0.33)
    assert accuracy["ratio"] == pytest.approx(0.62 / 0.95, abs=1e-6)
    assert accuracy["flagged"] is True
    assert result.flags == [
        "field_accuracy for format=jpeg is 0.62 vs 0.95 for format=pdf (difference 0.33 > 0.20; ratio 0.65 < 0.80)"
    ]
    assert result.max_disparity == {"format": pytest.approx(0.33)}
    assert not result.passed
    # metrics that are equal across formats are not flagged
    assert result.summary()["dimensions"]["format"]["metrics"]["completeness"]["flagged"] is False


def test_fair_frame_flags_nothing():
    data = frame((4, {"format": "pdf", "accuracy": 0.95}), (4, {"format": "jpeg", "accuracy": 0.90}))

    result = check_bias(data)

    assert result.passed and result.flags == []
    assert result.max_disparity["format"] == pytest.approx(0.05)


def test_ratio_alone_flags_a_low_scoring_slice():
    # 0.10 vs 0.25: difference 0.15 is within 0.20 but the jpeg slice gets 40% of pdf's quality
    data = frame((4, {"format": "pdf", "accuracy": 0.25}), (4, {"format": "jpeg", "accuracy": 0.10}))

    result = check_bias(data, ["format"])

    assert result.flags == [
        "field_accuracy for format=jpeg is 0.10 vs 0.25 for format=pdf (ratio 0.40 < 0.80)"
    ]


def test_groups_below_min_size_are_reported_but_do_not_decide():
    data = frame(
        (5, {"format": "pdf", "accuracy": 0.95}),
        (4, {"format": "png", "accuracy": 0.93}),
        (2, {"format": "jpeg", "accuracy": 0.10}),
    )

    result = check_bias(data, ["format"], BiasThresholds(min_group_size=3))

    accuracy = result.summary()["dimensions"]["format"]["metrics"]["field_accuracy"]
    assert accuracy["by_group"]["jpeg"] == pytest.approx(0.10)
    assert accuracy["group_sizes"] == {"jpeg": 2, "pdf": 5, "png": 4}
    assert accuracy["excluded_groups"] == ["jpeg"]
    assert accuracy["difference"] == pytest.approx(0.02)
    assert result.passed

    # the same jpeg group, once large enough, is flagged
    assert not check_bias(data, ["format"], BiasThresholds(min_group_size=2)).passed


def test_nan_accuracy_is_ignored_and_does_not_count_towards_group_size():
    data = frame(
        (4, {"format": "pdf", "accuracy": 0.9}),
        (3, {"format": "jpeg", "accuracy": 0.9}),
        (5, {"format": "jpeg", "accuracy": math.nan}),
    )

    accuracy = check_bias(data, ["format"]).summary()["dimensions"]["format"]["metrics"]["field_accuracy"]

    assert accuracy["by_group"] == {"jpeg": pytest.approx(0.9), "pdf": pytest.approx(0.9)}
    assert accuracy["group_sizes"] == {"jpeg": 3, "pdf": 4}
    assert accuracy["flagged"] is False


def test_all_nan_metric_is_not_comparable_and_not_flagged():
    data = frame((4, {"format": "pdf", "accuracy": math.nan}), (4, {"format": "jpeg", "accuracy": math.nan}))

    summary = check_bias(data, ["format"]).summary()

    accuracy = summary["dimensions"]["format"]["metrics"]["field_accuracy"]
    assert accuracy["by_group"] == {"jpeg": None, "pdf": None}
    assert accuracy["difference"] is None and accuracy["flagged"] is False
    json.dumps(summary, allow_nan=False)


def test_validation_pass_rate_is_compared_as_a_rate():
    data = frame(
        (4, {"format": "pdf", "validation_pass": True}),
        (2, {"format": "jpeg", "validation_pass": True}),
        (2, {"format": "jpeg", "validation_pass": False}),
    )

    result = check_bias(data, ["format"])

    passing = result.summary()["dimensions"]["format"]["metrics"]["validation_pass"]
    assert passing["by_group"] == {"jpeg": 0.5, "pdf": 1.0}
    assert result.flags[0].startswith("validation_pass for format=jpeg is 0.50 vs 1.00 for format=pdf")


def test_single_group_dimension_has_no_disparity():
    data = frame((6, {"format": "pdf"}))

    result = check_bias(data, ["doc_type", "format"])

    assert result.passed
    assert result.max_disparity == {"doc_type": None, "format": None}
    completeness = result.summary()["dimensions"]["doc_type"]["metrics"]["completeness"]
    assert completeness["by_group"] == {"billing_statement": 1.0}
    assert completeness["difference"] is None


def test_missing_slice_values_form_an_unknown_group():
    data = frame((3, {"servicer": "Nelnet", "accuracy": 0.95}), (3, {"servicer": None, "accuracy": 0.5}))

    result = check_bias(data, ["servicer"])

    assert "field_accuracy for servicer=unknown is 0.50 vs 0.95 for servicer=Nelnet" in result.flags[0]


def test_empty_frame_passes_with_nothing_measured():
    summary = check_bias(pd.DataFrame()).summary()

    assert summary["passed"] is True and summary["documents"] == 0
    assert set(summary["max_disparity"]) == {"doc_type", "servicer", "format", "page_bucket", "scan_quality"}
    json.dumps(summary, allow_nan=False)


def test_missing_dimension_column_names_the_column():
    with pytest.raises(KeyError, match="page_bucket"):
        check_bias(frame((3, {})).drop(columns=["page_bucket"]), ["page_bucket"])


def test_summary_without_ground_truth_omits_field_accuracy():
    data = frame((3, {"format": "pdf"}), (3, {"format": "jpeg"})).drop(columns=["field_accuracy"])

    metrics = check_bias(data, ["format"]).summary()["dimensions"]["format"]["metrics"]

    assert set(metrics) == {"completeness", "mean_confidence", "validation_pass"}


@pytest.mark.parametrize(
    ("pages", "bucket"),
    [(1, "1"), (2, "2-3"), (3, "2-3"), (4, "4+"), (40, "4+"), (0, "unknown"), (None, "unknown")],
)
def test_page_bucket_cut_points(pages, bucket):
    assert page_bucket(pages) == bucket


@pytest.mark.parametrize(
    ("has_text_layer", "clarity", "bucket"),
    [
        (True, 0.05, "text_layer"),
        (False, 0.6, "good"),
        (False, 0.5999, "fair"),
        (False, 0.3, "fair"),
        (False, 0.2999, "poor"),
        (False, None, "unknown"),
        (False, math.nan, "unknown"),
    ],
)
def test_scan_quality_bucket_cut_points(has_text_layer, clarity, bucket):
    assert scan_quality_bucket(has_text_layer, clarity) == bucket


# --- the check_bias stage: labels, accuracy per slice, labels it cannot read --------------------

LABELS_KEY = "landing/labels.jsonl"


def bias_run(tmp_path, labels: bytes | None, blank_fields=()) -> StageContext:
    """A run whose extract_data and preprocess_documents outputs are in the catalog: 12 documents
    (every type twice), pdf with a text layer (even rows) and jpeg scans (odd rows). check_bias
    reads only ``row_pass`` of the gate's result."""
    ctx = stage_context(tmp_path)
    extracted = clean_frame(12)
    ctx.catalog.save_table("extract_data/part-0000", extracted)
    ctx.catalog.save_table("preprocess_documents/documents", pd.DataFrame({
        "sha256": extracted["sha256"],
        "format": ["pdf" if i % 2 == 0 else "jpeg" for i in range(12)],
        "pages": 1,
        "has_text_layer": [i % 2 == 0 for i in range(12)],
        "clarity": 0.7,
    }))
    ctx.catalog.save_json("validate_extraction/result", {"row_pass": {}})
    if labels is not None:
        ctx.store.put_bytes(LABELS_KEY, labels)
    return ctx


def sample_labels(ctx: StageContext, jpeg_wrong: tuple[str, ...] = ()) -> list[dict[str, object]]:
    """labels.jsonl rows as mlops.sample_data writes them; ``jpeg_wrong`` fields of the jpeg
    documents hold a different truth than what was extracted."""
    rows = []
    for i, row in enumerate(ctx.catalog.load_records("extract_data/part-0000")):
        fields = {name: row[name] for name in FIELD_NAMES}
        if i % 2:
            fields |= {name: "something else" for name in jpeg_wrong}
        rows.append({"filename": f"doc-{i}.pdf", "sha256": row["sha256"], "doc_type": row["doc_type"],
                     "family": "classic", "fields": fields, "expected_quarantine_reason": None})
    return rows


def jsonl(rows) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def warnings_about_labels(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and LABELS_KEY in r.getMessage()]


def test_with_labels_the_stage_reports_field_accuracy_per_slice(tmp_path, caplog):
    ctx = bias_run(tmp_path, labels=None)
    ctx.store.put_bytes(LABELS_KEY, jsonl(sample_labels(ctx, jpeg_wrong=("servicer", "principal"))))

    summary = check_bias_stage.run(ctx)

    result = ctx.catalog.load_json("check_bias/result")
    accuracy = result["dimensions"]["format"]["metrics"]["field_accuracy"]
    assert accuracy["by_group"] == {"jpeg": pytest.approx(6 / 8), "pdf": 1.0}
    assert accuracy["flagged"] is True  # difference 0.25 > 0.20
    assert result["dimensions"]["doc_type"]["metrics"]["field_accuracy"]["group_sizes"]["billing_statement"] == 2
    assert summary["field_accuracy"] == pytest.approx(14 / 16)
    assert summary["accuracy_skipped"] is None and result["accuracy_skipped"] is None
    assert ctx.catalog.load_json("check_bias/accuracy")["fields"]["principal"] == pytest.approx(0.5)
    assert warnings_about_labels(caplog) == []


MALFORMED_LABELS = {
    "another schema": jsonl([{"file": f"doc-{i}.pdf", "truth": {"principal": 5000}} for i in range(3)]),
    "rows without fields": jsonl([{"sha256": "ab" * 32, "doc_type": "billing_statement"}]),
    "rows that are not objects": b'[1, 2]\n"billing_statement"\n42\n',
    "not JSON": b"sha256,principal\nabc,5000\n",
    "empty": b"",
    "not text": b"\xff\xfe\x00\x01labels",
}


@pytest.mark.parametrize("body", MALFORMED_LABELS.values(), ids=MALFORMED_LABELS.keys())
def test_labels_it_cannot_read_skip_accuracy_with_one_warning_and_the_run_goes_on(tmp_path, caplog, body):
    ctx = bias_run(tmp_path, labels=body)

    summary = check_bias_stage.run(ctx)

    assert summary["field_accuracy"] is None
    assert summary["accuracy_skipped"].startswith(f"labels at {ctx.store.uri(LABELS_KEY)} unusable")
    assert len(warnings_about_labels(caplog)) == 1
    assert "field accuracy skipped" in warnings_about_labels(caplog)[0]
    result = ctx.catalog.load_json("check_bias/result")
    assert result["accuracy_skipped"] == summary["accuracy_skipped"]
    assert set(result["dimensions"]["format"]["metrics"]) == {"completeness", "mean_confidence", "validation_pass"}
    assert ctx.catalog.load_json("check_bias/accuracy") is None


def test_a_few_broken_label_lines_are_warned_about_and_the_rest_still_scored(tmp_path, caplog):
    ctx = bias_run(tmp_path, labels=None)
    rows = sample_labels(ctx)
    ctx.store.put_bytes(LABELS_KEY, jsonl(rows[:6]) + b'{"sha256": "truncated\n' + jsonl(rows[6:]))

    summary = check_bias_stage.run(ctx)

    assert summary["field_accuracy"] == 1.0 and summary["accuracy_skipped"] is None
    (warning,) = warnings_about_labels(caplog)
    assert "line 7: not JSON" in warning and "accuracy measured on the 12 usable rows" in warning


def test_without_labels_completeness_counts_the_fields_each_document_type_carries(tmp_path, caplog):
    ctx = bias_run(tmp_path, labels=None)
    extracted = ctx.catalog.load_table("extract_data/part-0000")
    enrollment = extracted["doc_type"] == "enrollment_verification"
    for name in set(FIELD_NAMES) - set(REQUIRED_FIELDS["enrollment_verification"]):
        extracted[name] = extracted[name].mask(enrollment)
    ctx.catalog.save_table("extract_data/part-0000", extracted)

    summary = check_bias_stage.run(ctx)

    assert summary["accuracy_skipped"] == f"no labels at {ctx.store.uri(LABELS_KEY)}"
    completeness = ctx.catalog.load_json("check_bias/result")["dimensions"]["doc_type"]["metrics"]["completeness"]
    assert completeness["by_group"]["enrollment_verification"] == 1.0
    assert warnings_about_labels(caplog) == []
