"""`python -m mlops drift` over a real metadata store (SQLite and Postgres): the verdict first,
the drifted fields with statistic, value and threshold, and reports/<run>/drift.json."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mlops.cli import cli
from tests.unit.labelled_tables import labelled_table, store_run

pytestmark = pytest.mark.integration


def drift(*args: str):
    result = CliRunner().invoke(cli, ["drift", *args])
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_drift_names_the_drifted_fields_and_writes_its_report(cli_store, tmp_path):
    for seed in (1, 2):
        store_run(cli_store, f"clean-{seed}", labelled_table(seed))
    store_run(cli_store, "gate-failed", labelled_table(3), verdict="failed")  # not a good run
    assert drift("--run-id", "gate-failed")[0] == (
        "NOT ENOUGH HISTORY for run gate-failed: 2 baseline runs with field statistics, 3 needed "
        "(monitoring.min_baseline_runs)"
    )
    for seed in (4, 5):
        store_run(cli_store, f"clean-{seed}", labelled_table(seed))
    store_run(cli_store, "reseeded", labelled_table(6))
    shifted = labelled_table(7).assign(principal=lambda frame: frame["principal"] * 3)
    store_run(cli_store, "shifted", shifted, verdict="failed")

    assert drift("--run-id", "reseeded")[0] == "NO DRIFT in run reseeded: 39 checks against 4 baseline runs"
    lines = drift()  # the newest run with statistics

    assert lines[0].startswith("DRIFT in run shifted: ") and "principal" in lines[0]
    principal = next(line for line in lines[1:] if line.split()[:2] == ["principal", "ks"])
    assert "(threshold " in principal and "p=" in principal
    assert lines[-1] == f"report:  file://{tmp_path / 'data' / 'reports' / 'shifted' / 'drift.json'}"
    report = json.loads((tmp_path / "data" / "reports" / "shifted" / "drift.json").read_text())
    assert report["verdict"] == "DRIFT"
    assert report["baseline_run_ids"] == ["clean-1", "clean-2", "clean-4", "clean-5", "reseeded"]
    assert [(check["field"], check["statistic"]) for check in report["drifted"]] == [("principal", "ks")]
    assert len(report["checks"]) > 30

    narrow = drift("--run-id", "shifted", "--baseline-runs", "1", "--json")
    assert narrow[0].startswith("NOT ENOUGH HISTORY for run shifted: 1 baseline run ")
    assert json.loads("\n".join(narrow[1:-1]))["baseline_run_ids"] == ["reseeded"]


def test_drift_of_a_run_without_statistics_says_how_to_record_them(cli_store):
    cli_store.start_run("old", "fingerprint", "1")
    result = CliRunner().invoke(cli, ["drift", "--run-id", "old"])
    assert result.exit_code == 2
    assert (
        "run 'old' has no field statistics: `python -m mlops stage store_results --run-id old`"
        in result.output
    )
