"""The cross-run dashboard (reports/dashboard.html) over a real metadata store (SQLite and
Postgres), opened in Chromium at desktop and phone widths: verdict first, charts drawn, each run
linked to its report; generate_reports regenerates it and survives its failure."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlops.cli import cli
from mlops.config import get_settings
from mlops.io.objects import open_object_store
from mlops.models import Finding
from mlops.monitoring.dashboard import collect
from mlops.stages import open_context
from mlops.stages.generate_reports import publish_failure
from tests.fixtures.browser import chromium_path, visit
from tests.unit.labelled_tables import STATUS_OF_VERDICT, labelled_table, store_run

pytestmark = pytest.mark.integration
CHARTS = ["Documents", "Documents per day", "Quarantine rate by reason", "Gate score", "Field accuracy (labelled runs)",
          "Missing rate per field", "Anomalies by detector", "Drift score (worst statistic / its threshold)",
          "Stage timeline"]  # fmt: skip
SVG_LAYERS_PER_CHART = 3  # plotly draws a chart in three <svg class="main-svg">
DRIFTED = {
    "verdict": "DRIFT",
    "drifted": [{"field": "principal", "statistic": "ks", "value": 0.9, "threshold": 0.6, "drifted": True}],
    "checks": [{"field": "principal", "statistic": "ks", "value": 0.9, "threshold": 0.6, "drifted": True},
               {"field": "term_months", "statistic": "ks", "value": 0.3, "threshold": 0.6, "drifted": False}],
}  # fmt: skip


def reported_run(store, reports: Path, run_id: str, verdict: str, detectors: list[str], seed: int) -> None:
    """A completed run as the dashboard reads it: extractions and field statistics, metrics,
    findings, stage timings, and a report beside the dashboard."""
    store_run(store, run_id, labelled_table(seed), verdict=verdict)
    counts = {"seen": 12, "new": 12, "skipped": 0, "accepted": 10, "quarantined": 2, "duplicates": 0}
    store.finish_run(run_id, STATUS_OF_VERDICT[verdict], counts, verdict=verdict)
    store.save_metrics(run_id, {"validation.score": 0.5 if verdict == "failed" else 0.97,
                                "extraction.field_accuracy": 0.9})  # fmt: skip
    finding = {"field": "principal", "value": "1", "severity": "warning", "reason": "odd"}
    store.replace_findings(
        run_id,
        [Finding(sha256=f"{n:064x}", detector=detector, **finding) for n, detector in enumerate(detectors)],
    )
    for stage, batch, seconds in (("extract_data", 0, 4.0), ("extract_data", 1, 3.0), ("generate_reports", None, 0.5)):
        store.record_event(run_id, stage, "stage_finished", details={"seconds": seconds, "batch": batch})
    for n, reason in enumerate(("corrupt", "corrupt", "encrypted")):  # a retried task repeats a decision
        store.record_event(run_id, "validate_documents", "quarantined", sha256=f"{n % 2:064x}",
                           details={"reason": reason})  # fmt: skip
    (reports / run_id).mkdir(parents=True)
    (reports / run_id / "report.html").write_text(f"<!DOCTYPE html><title>{run_id}</title>")


def test_the_dashboard_shows_the_last_runs_verdict_first_and_links_each_report(cli_store, tmp_path):
    reports = tmp_path / "data" / "reports"
    reported_run(cli_store, reports, "too-old", "passed", [], seed=1)
    reported_run(cli_store, reports, "clean", "passed", ["rules"], seed=2)
    reported_run(cli_store, reports, "flagged", "warning", ["rules", "isolation_forest"], seed=3)
    (reports / "flagged" / "drift.json").write_text(json.dumps(DRIFTED))
    cli_store.start_run("crashed", "fingerprint", "1")
    cli_store.stop_run("crashed", "error", "ObjectStoreError: the bucket is gone")
    reported_run(cli_store, reports, "gate-failed", "failed", ["robust_zscore"], seed=4)

    result = CliRunner().invoke(cli, ["dashboard", "--runs", "4"])

    assert result.exit_code == 0, result.output
    headline = "Last run FAILED · 2 of the last 4 runs failed"
    page = reports / "dashboard.html"
    assert result.output.splitlines() == [headline, f"dashboard:  file://{page}"]
    html = page.read_text()
    links = re.findall(r'<a href="([^"]+)"', html)
    assert links == ["gate-failed/report.html", "flagged/report.html", "clean/report.html"]  # newest first
    assert all((page.parent / link).is_file() for link in links) and "too-old" not in html
    assert "isolation_forest 1" in html and "DRIFT" in html and "<td>10</td>" in html
    rows = {row.run_id: row for row in collect(open_object_store(get_settings()), cli_store, get_settings(), 4)}
    flagged = rows["flagged"]
    assert flagged.quarantine_rates == {"corrupt": 1 / 12, "encrypted": 1 / 12}  # one decision per document
    assert (flagged.drift.score, flagged.drift.drifted_fields) == (1.5, 1)
    spans = {(span.stage, span.seconds): span.start for span in flagged.stages}
    assert spans.keys() == {("extract_data", 4.0), ("extract_data", 3.0), ("generate_reports", 0.5)}
    assert min(spans.values()) == 0 and spans["generate_reports", 0.5] > 0  # a Gantt bar ends where it finished
    for width in visit(page):
        assert width.first_text == headline, width.width
        assert width.console_errors == [] and width.failed_requests == [], width.width
        assert width.overflow_px <= 0, width.width
        assert all(f"\n{title}\n" in width.body_text for title in CHARTS), width.width
        assert width.charts_drawn == len(CHARTS) * SVG_LAYERS_PER_CHART, width.width
        run_started_result = r"crashed\s+[\d-]+ [\d:]+\s+ERROR"
        assert re.search(run_started_result, width.body_text), width.width
    # a day's bar and a timeline bar are not on a run's axis: their clicks still open the run's report
    assert clicked_report(page, "Documents per day") == "clean/report.html"  # the day's first run
    assert clicked_report(page, "Stage timeline") == "clean/report.html"


def clicked_report(page: Path, chart: str) -> str:
    """Click the first bar of ``chart``; the page it opens, relative to the dashboard."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.goto(page.resolve().as_uri(), wait_until="load")
            section = tab.locator("section", has=tab.get_by_role("heading", name=chart, exact=True))
            with tab.expect_navigation():
                section.locator(".plotly-graph-div g.point path").first.click(force=True)
            return tab.url.removeprefix(page.parent.resolve().as_uri() + "/")
        finally:
            browser.close()


def test_generate_reports_regenerates_the_dashboard_and_survives_its_failure(cli_store, monkeypatch, caplog):
    settings = get_settings()
    first = publish_failure(open_context("first", settings), "extract_data", "ConfigError: no extractor")
    assert first["dashboard"].endswith("reports/dashboard.html")
    dashboard = Path(first["dashboard"].removeprefix("file://"))
    assert "Last run ERROR · 1 of the last 1 runs failed" in dashboard.read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("metadata store unreachable")

    monkeypatch.setattr("mlops.stages.generate_reports.write_dashboard", broken)
    with caplog.at_level(logging.ERROR):
        second = publish_failure(
            open_context("second", settings), "extract_data", "ConfigError: no extractor"
        )

    assert second["report"].endswith("reports/second/report.html") and "dashboard" not in second
    assert "reports/dashboard.html not regenerated" in caplog.text
