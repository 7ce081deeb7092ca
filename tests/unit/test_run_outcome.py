"""A run's state tells the truth: its verdict and the reasons behind it, a verdict that fails the
Airflow run or the CLI per gate.fail_run_on, configuration errors that fail at once naming where
the value came from, and a failed run that still publishes its summary and report."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from click.testing import CliRunner

from mlops.cli import EXIT_VERDICT, cli
from mlops.config import get_settings
from mlops.errors import ConfigError
from mlops.orchestration import config_errors_fail_at_once, enforce_verdict, setting_source, task_settings
from mlops.run_summary import fails_run, verdict, verdict_line
from mlops.stages import open_context
from mlops.stages.generate_reports import FINAL_STATUS, publish_failure
from tests.fixtures.platform import platform_settings

COUNTS = {"seen": 10, "new": 10, "skipped": 0, "accepted": 8, "quarantined": 2, "duplicates": 0}


def gate(status: str, rows: int = 8, critical: list[str] | None = None) -> dict:
    score = {"PASSED": 0.97, "WARNING": 0.92, "FAILED": 0.5}[status]
    return {"status": status, "score": score, "rows": rows, "thresholds": {"passed": 0.95, "warning": 0.9},
            "critical_failures": critical or []}  # fmt: skip


@pytest.fixture
def fresh_settings(monkeypatch, tmp_path):
    """get_settings() rebuilt from this test's environment (and forgotten afterwards)."""
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_a_typo_in_the_landing_prefix_is_a_warning_naming_it_not_a_vacuous_pass():
    empty = dict.fromkeys(COUNTS, 0)
    status, reasons = verdict(empty, gate("PASSED", rows=0), "landng")
    assert status == "warning"
    assert reasons == ["no documents found under landing prefix 'landng'"]


def test_nothing_new_is_a_success_that_says_so():
    status, reasons = verdict(COUNTS | {"new": 0, "skipped": 10, "accepted": 0, "quarantined": 0},
                              gate("PASSED", rows=0), "landing")  # fmt: skip
    assert status == "success"
    assert reasons == ["no new documents: all 10 were processed by earlier runs"]


def test_every_new_document_quarantined_is_a_warning():
    status, reasons = verdict(COUNTS | {"accepted": 0, "quarantined": 10}, gate("PASSED", rows=0), "landing")
    assert (status, reasons) == ("warning", ["all 10 new documents were quarantined"])


@pytest.mark.parametrize(("gate_status", "run_status"), [("PASSED", "success"), ("WARNING", "warning"),
                                                          ("FAILED", "failed")])  # fmt: skip
def test_the_gate_verdict_is_the_run_status_with_its_score_and_thresholds(gate_status, run_status):
    status, (reason,) = verdict(COUNTS, gate(gate_status), "landing")
    assert status == run_status
    assert reason.startswith(f"quality gate {gate_status}: score ") and "over 8 documents" in reason
    assert "PASSED from 0.95, WARNING from 0.9" in reason


def test_a_failed_gate_names_its_critical_expectations_and_counts_the_rest():
    critical = [f"expect_column_values_to_not_be_null(field_{n}) [critical]" for n in range(5)]
    _, (reason,) = verdict(COUNTS, gate("FAILED", critical=critical), "landing")
    assert "field_0" in reason and "field_2" in reason and "field_3" not in reason
    assert reason.endswith("and 2 more")


def test_the_worst_finding_wins():
    empty_gate = gate("FAILED")
    status, reasons = verdict(COUNTS | {"accepted": 0, "quarantined": 10}, empty_gate, "landing")
    assert status == "failed" and len(reasons) == 2


@pytest.mark.parametrize(
    ("status", "fail_run_on", "fails"),
    [("failed", "failed", True), ("warning", "failed", False), ("success", "failed", False),
     ("failed", "warning", True), ("warning", "warning", True), ("success", "warning", False),
     ("failed", "never", False), ("warning", "never", False)],
)  # fmt: skip
def test_fail_run_on_decides_which_verdicts_fail_the_run(status, fail_run_on, fails):
    assert fails_run(status, fail_run_on) is fails


def test_verdict_line_leads_with_the_status():
    line = verdict_line({"run_id": "r1", "status": "failed", "status_reasons": ["a", "b"]})
    assert line == "FAILED run r1: a; b"
    assert verdict_line({"run_id": "r1", "status": "success", "status_reasons": []}).endswith("every check passed")


OUTCOME = {"run_id": "r1", "status_reasons": ["quality gate FAILED: score 0.50"], "report": "file:///r/report.html"}


@pytest.mark.parametrize(
    ("status", "fail_run_on", "outcome"),
    [("failed", "failed", AirflowFailException), ("warning", "failed", AirflowSkipException),
     ("success", "failed", None), ("warning", "warning", AirflowFailException),
     ("failed", "never", AirflowSkipException), ("success", "never", None)],
)  # fmt: skip
def test_quality_gate_task_fails_skips_or_passes_per_setting(fresh_settings, status, fail_run_on, outcome):
    fresh_settings.setenv("MLOPS_GATE__FAIL_RUN_ON", fail_run_on)
    if outcome is None:
        enforce_verdict(OUTCOME | {"status": status})
        return
    with pytest.raises(outcome) as raised:
        enforce_verdict(OUTCOME | {"status": status})
    assert f"{status.upper()} run r1: quality gate FAILED" in str(raised.value)
    assert "report: file:///r/report.html" in str(raised.value)


def test_a_config_error_fails_at_once_naming_the_environment_variable_it_came_from(fresh_settings):
    fresh_settings.setenv("MLOPS_EXTRACT__MODEL_VERSION", "v9")
    with pytest.raises(AirflowFailException) as raised, config_errors_fail_at_once():
        raise ConfigError("extract.model_version: no trained extractor at data/models/v9/extractor.joblib")
    message = str(raised.value)
    assert message.startswith("configuration error (not retried): extract.model_version: no trained extractor")
    assert "extract.model_version from environment variable MLOPS_EXTRACT__MODEL_VERSION" in message


def test_setting_sources_in_precedence_order(fresh_settings, tmp_path):
    fresh_settings.setenv("MLOPS_PROJECT_DIR", str(tmp_path))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "pipeline_config.yaml").write_text("limits:\n  max_pages: 5\n")
    (tmp_path / ".env").write_text("MLOPS_LIMITS__TIMEOUT_SECONDS=9\n")
    fresh_settings.setenv("MLOPS_LIMITS__MAX_FILE_BYTES", "100")
    assert setting_source("limits.max_file_bytes") == "environment variable MLOPS_LIMITS__MAX_FILE_BYTES"
    assert setting_source("limits.timeout_seconds") == "MLOPS_LIMITS__TIMEOUT_SECONDS in .env"
    assert setting_source("limits.max_pages") == "`limits.max_pages` in config/pipeline_config.yaml"
    assert setting_source("limits.worker_memory_mb") == "its default"


def test_a_bad_trigger_form_prefix_is_named_as_the_param(fresh_settings):
    with pytest.raises(ConfigError, match=r"^trigger-form param landing_prefix='/': "):
        task_settings({"landing_prefix": "/"})
    assert task_settings({"landing_prefix": "inbox/2026/"}).prefixes.landing == "inbox/2026"
    assert task_settings({"landing_prefix": None}).prefixes.landing == "landing"


def test_a_failed_run_publishes_its_summary_and_report_as_latest(tmp_path):
    ctx = open_context("manual__failing", platform_settings(tmp_path))
    publish_failure(ctx, "extract_data", "ConfigError: extract.model_version: no trained extractor")

    reports = ctx.settings.prefixes.reports
    latest = json.loads(ctx.store.get_bytes(f"{reports}/latest/run_summary.json"))
    assert latest["run_id"] == "manual__failing" and latest["status"] == "failed"
    assert latest["error"] == {"task": "extract_data", "message": "ConfigError: extract.model_version: no trained extractor"}
    assert latest["status_reasons"][0] == "task extract_data failed: ConfigError: extract.model_version: no trained extractor"
    report = ctx.store.get_bytes(f"{reports}/manual__failing/report.html").decode()
    assert "task extract_data failed" in report
    run = ctx.metadata.get_run("manual__failing")
    assert run["status"] == FINAL_STATUS["failed"] and run["finished_at"]


@pytest.mark.parametrize(("fail_run_on", "exit_code"), [("failed", 0), ("warning", EXIT_VERDICT)])
def test_cli_run_prints_the_verdict_first_and_exits_per_setting(fresh_settings, tmp_path, fail_run_on, exit_code):
    """An empty landing area: a WARNING the ops engineer reads on the first line; cron fails on it
    only when told to."""
    fresh_settings.setenv("MLOPS_GATE__FAIL_RUN_ON", fail_run_on)
    fresh_settings.setenv("MLOPS_PREFIXES__LANDING", "landng")
    result = CliRunner().invoke(cli, ["run", "--run-id", "cli_empty"])
    assert result.exit_code == exit_code, result.output
    first_line = result.stdout.splitlines()[0]
    assert first_line == "WARNING run cli_empty: no documents found under landing prefix 'landng'"
    summary = json.loads((tmp_path / "data" / "reports" / "latest" / "run_summary.json").read_text())
    assert summary["status"] == "warning" and summary["landing_prefix"] == "landng"
