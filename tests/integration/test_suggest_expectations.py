"""`python -m mlops suggest-expectations`: a suite profiled from clean runs' stored extractions,
written beside the current one with a readable diff, passes those runs through Great
Expectations (as the gate runs it) and fails a corrupted run."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mlops.cli import cli
from mlops.config import get_settings
from mlops.quality.expectations import validate_extractions
from mlops.quality.suggest import suite_diff, text_format
from tests.unit.labelled_tables import labelled_table, store_run

pytestmark = pytest.mark.integration
CLEAN_SEEDS = (1, 2, 3)


def corrupted(frame):
    """A run gone wrong: amounts in cents, truncated account numbers, names lost, an unknown form."""
    frame = frame.copy()
    frame["principal"] = frame["principal"] * 100
    frame["account_number"] = frame["account_number"].map(lambda value: value and f"ACCT-{value[:4]}")
    frame.loc[frame.index[::2], "borrower_name"] = None
    frame.loc[frame.index[:6], "doc_type"] = "tuition_invoice"
    return frame


def test_a_suite_suggested_from_clean_runs_passes_them_and_fails_a_corrupted_run(cli_store, tmp_path):
    clean = {f"clean-{seed}": labelled_table(seed) for seed in CLEAN_SEEDS}
    for run_id, frame in clean.items():
        store_run(cli_store, run_id, frame, "passed")
    store_run(cli_store, "gate-failed", corrupted(labelled_table(4)), "failed")  # never a baseline
    out = tmp_path / "suggested.json"

    result = CliRunner().invoke(cli, ["suggest-expectations", "--last", "5", "--out", str(out)])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"proposed suite: {out} (") and "from 3 runs" in lines[0]
    assert "nothing is applied" in lines[0]
    assert "  ~ expect_column_values_to_be_between(principal): max_value 500000 -> " in result.output
    assert (
        "  + expect_column_values_to_match_regex(account_number): regex ^[0-9A-Z\\-]{10,12}$" in result.output
    )
    assert lines[-1].endswith(" unchanged")
    suite = json.loads(out.read_text())
    assert suite["meta"]["suggested_from"]["runs"] == list(clean)
    assert get_settings().quality.suite_file.read_text() != out.read_text()  # nothing applied

    for run_id, frame in clean.items():
        passed = validate_extractions(frame, out)
        assert passed.successful_expectations == passed.evaluated_expectations, (
            run_id, [outcome.label for outcome in passed.failed_expectations() if not outcome.critical])  # fmt: skip

    broken = validate_extractions(corrupted(labelled_table(9)), out)
    failed = {outcome.label for outcome in broken.failed_expectations() if not outcome.critical}
    assert {"expect_column_values_to_be_between(principal)", "expect_column_values_to_match_regex(account_number)",
            "expect_column_values_to_not_be_null(borrower_name)", "expect_column_values_to_be_in_set(doc_type)",
            } <= failed  # fmt: skip
    reseeded = validate_extractions(labelled_table(9), out)
    assert {outcome.label for outcome in reseeded.failed_expectations() if not outcome.critical} <= {
        "expect_column_values_to_be_between(principal)"  # the odd outlier, within mostly most of the time
    }


def test_from_runs_names_runs_and_refuses_unknown_ones(cli_store, tmp_path):
    store_run(cli_store, "only", labelled_table(1), "failed")
    out = tmp_path / "suggested.json"
    ok = CliRunner().invoke(cli, ["suggest-expectations", "--from-runs", "only", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    assert json.loads(out.read_text())["meta"]["suggested_from"]["runs"] == ["only"]

    unknown = CliRunner().invoke(cli, ["suggest-expectations", "--from-runs", "only,nope", "--out", str(out)])
    assert unknown.exit_code == 2 and "no run 'nope' in the metadata store" in unknown.output
    neither = CliRunner().invoke(cli, ["suggest-expectations"])
    assert neither.exit_code == 2 and "give either --from-runs" in neither.output


def test_text_formats_and_the_diff_read_as_a_person_would_write_them():
    assert text_format(["7052160195", "0000000001"]) == "^[0-9]{10}$"
    assert text_format(["a3f9" * 16]) == "^[0-9a-f]{64}$"
    assert text_format(["Leila L. Oyelaran", "Jo O'Neil-Smith"]) == r"^[a-zA-Z '\-.]{15,17}$"
    current = {"expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "principal", "max_value": 500000}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "doc_type", "value_set": ["a", "b"]}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "sha256"}},
    ]}  # fmt: skip
    proposed = {"expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "principal", "max_value": 132000.0,
                                                                  "mostly": 0.95}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "doc_type", "value_set": ["b", "c"]}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "sha256"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "servicer", "mostly": 0.9}},
    ]}  # fmt: skip
    assert suite_diff(current, proposed) == [
        "~ expect_column_values_to_be_in_set(doc_type): value_set +[c] -[a]",
        "~ expect_column_values_to_be_between(principal): max_value 500000 -> 132000; mostly (none) -> 0.95",
        "+ expect_column_values_to_not_be_null(servicer): mostly 0.9",
        "1 new, 2 changed, 0 only in the current suite, 1 unchanged",
    ]
