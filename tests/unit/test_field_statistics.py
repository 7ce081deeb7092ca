"""Per-field statistics of an extracted table: what each field's row says about it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mlops.monitoring.statistics import QUANTILE_PROBABILITIES, field_statistics

CATEGORICAL = ["doc_type", "servicer"]


def table() -> pd.DataFrame:
    return pd.DataFrame({
        "sha256": [f"{n:064x}" for n in range(6)],
        "seconds": [0.1] * 6,
        "doc_type": ["billing_statement"] * 3 + ["master_promissory_note"] * 2 + ["unknown"],
        "doc_type_confidence": [0.9] * 6,
        "borrower_name": ["Ana Ruiz", "Bo Li", None, "", "Cy Wu", "Di Ng"],
        "borrower_name_confidence": [0.9, 0.8, 0.0, 0.0, 0.7, 0.6],
        "principal": [1000.0, 2000.0, np.nan, 4000.0, 5000.0, 6000.0],
        "principal_confidence": [0.5, 0.5, 0.0, 0.5, 0.5, 0.5],
        "disbursement_date": ["2020-01-01", "2021-07-02", None, None, None, None],
        "ocr_confidence": [None, 0.8, 0.9, None, None, None],
    })  # fmt: skip


def by_field(frame: pd.DataFrame, **options) -> dict[str, dict]:
    return {
        item["field"]: item for item in field_statistics(frame, categorical_fields=CATEGORICAL, **options)
    }


def test_every_data_column_is_a_field_and_confidences_fold_into_their_field():
    stats = by_field(table())
    assert list(stats) == ["doc_type", "borrower_name", "principal", "disbursement_date", "ocr_confidence"]
    assert {field: item["kind"] for field, item in stats.items()} == {
        "doc_type": "categorical", "borrower_name": "text", "principal": "numeric",
        "disbursement_date": "date", "ocr_confidence": "numeric",
    }  # fmt: skip


def test_missing_counts_nulls_nan_and_blank_strings_and_confidence_is_over_present_values():
    stats = by_field(table())
    assert (stats["borrower_name"]["missing"], stats["borrower_name"]["count"]) == (2, 6)
    assert math.isclose(stats["borrower_name"]["missing_rate"], 2 / 6)
    assert math.isclose(stats["borrower_name"]["mean_confidence"], (0.9 + 0.8 + 0.7 + 0.6) / 4)
    assert stats["principal"]["missing"] == 1
    assert stats["ocr_confidence"]["mean_confidence"] is None


def test_numeric_fields_keep_quantiles_and_a_histogram():
    principal = by_field(table(), bins=4)["principal"]["stats"]
    values = [1000.0, 2000.0, 4000.0, 5000.0, 6000.0]
    assert (principal["min"], principal["max"], principal["mean"]) == (1000.0, 6000.0, 3600.0)
    assert principal["quantiles"] == list(np.quantile(values, QUANTILE_PROBABILITIES))
    assert principal["histogram"] == {
        "edges": [1000.0, 2250.0, 3500.0, 4750.0, 6000.0],
        "counts": [2, 0, 1, 2],
    }


def test_dates_are_profiled_as_decimal_years():
    dates = by_field(table())["disbursement_date"]["stats"]
    assert dates["min"] == 2020.0 and 2021.4 < dates["max"] < 2021.6


def test_categorical_fields_keep_top_k_frequencies_and_text_fields_keep_no_values():
    stats = by_field(table(), top_k=2)
    assert stats["doc_type"]["stats"]["frequencies"] == {"billing_statement": 3, "master_promissory_note": 2}
    assert stats["doc_type"]["stats"]["other"] == 1
    names = stats["borrower_name"]["stats"]
    assert "frequencies" not in names and "Ana Ruiz" not in repr(names)
    assert names["distinct"] == 4 and names["lengths"]["min"] == 5.0 and names["lengths"]["max"] == 8.0


def test_a_numeric_field_read_as_text_changes_kind_and_an_empty_field_has_none():
    frame = table().assign(principal=["$1,000", "2000", None, None, None, None], ocr_confidence=None)
    stats = by_field(frame)
    assert stats["principal"]["kind"] == "text"
    assert stats["ocr_confidence"]["kind"] is None and stats["ocr_confidence"]["missing_rate"] == 1.0


def test_an_empty_table_has_no_fields():
    assert field_statistics(pd.DataFrame(), categorical_fields=CATEGORICAL) == []
