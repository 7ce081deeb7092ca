"""`python -m mlops bias-window` over a real metadata store (SQLite and Postgres) and the per-run
bias tables check_bias leaves in the object store: a slice that is worse in every run is flagged
with its interval and a mitigation note; a slice too small to be evidence, and a gap within
chance, are not; a window of one run holds too few documents to flag anything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mlops.cli import cli
from mlops.config import get_settings
from mlops.io.catalog import Catalog
from mlops.io.metadata import MetadataStore
from mlops.io.objects import open_object_store
from mlops.monitoring.bias_window import BIAS_TABLE

pytestmark = pytest.mark.integration
SCANS = ["text_layer"] * 15 + ["good"] * 10 + ["poor"] * 4 + ["fair"]  # 30 documents per run


def bias_rows(seed: int) -> pd.DataFrame:
    """One run's check_bias documents table: poor scans lose fields, one fair scan lost nearly all;
    TIFFs' confidence is only noisier, not lower for sure."""
    rng = np.random.default_rng(seed)
    rows = []
    for index, scan in enumerate(SCANS):
        tiff = index % 10 == 0
        bad = {"poor": 0.45, "fair": 0.1}.get(scan)
        rows.append({
            "sha256": f"{seed:02d}{index:062d}", "doc_type": ["billing_statement", "idr_application"][index % 2],
            "servicer": ["Nelnet", "MOHELA", "Aidvantage"][index % 3], "format": "tiff" if tiff else "pdf",
            "page_bucket": ["1", "2-3"][index % 2], "scan_quality": scan,
            "completeness": min(1.0, rng.normal(bad or 0.95, 0.05)),
            "mean_confidence": rng.uniform(0.3, 1.0) if tiff else rng.uniform(0.7, 0.95),
            "validation_pass": 1.0,
            "field_accuracy": min(1.0, rng.normal((bad or 0.95) - 0.05, 0.05)) if index % 3 else np.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture
def window_settings(cli_store, monkeypatch):
    monkeypatch.setenv("MLOPS_BIAS__WINDOW_MIN_DOCUMENTS", "10")
    monkeypatch.setenv("MLOPS_BIAS__BOOTSTRAP_SAMPLES", "50")  # fairlearn's bootstrap costs ~6 ms a resample
    for seed in range(1, 5):
        store_bias_run(cli_store, f"run-{seed}", bias_rows(seed))


def store_bias_run(metadata: MetadataStore, run_id: str, frame: pd.DataFrame) -> None:
    """A completed run as check_bias and generate_reports leave it."""
    settings = get_settings()
    metadata.start_run(run_id, "fingerprint", "1")
    Catalog(open_object_store(settings), settings.prefixes.runs, run_id).save_table(BIAS_TABLE, frame)
    metadata.finish_run(run_id, "success", {}, verdict="passed")


def bias_window(*args: str) -> tuple[list[str], dict]:
    result = CliRunner().invoke(cli, ["bias-window", "--json", *args])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    body = lines[1 : next(i for i, line in enumerate(lines) if line == "}") + 1]
    return lines, json.loads("\n".join(body))


def test_a_slice_worse_in_every_run_is_flagged_with_its_interval_and_what_to_do(window_settings):
    lines, report = bias_window()

    assert lines[0].startswith("BIAS FLAGGED over 4 runs (120 documents): completeness for scan_quality=poor is 0.4")
    flagged = {(flag["dimension"], flag["slice"], flag["metric"]) for flag in report["flagged"]}
    assert flagged == {("scan_quality", "poor", "field_accuracy"), ("scan_quality", "poor", "completeness")}
    completeness = next(flag for flag in report["flagged"] if flag["metric"] == "completeness")
    low, high = completeness["difference_interval"]
    assert 0.2 < low <= completeness["difference"] <= high
    assert completeness["documents"] == 16
    assert any(line.startswith("  scan_quality=poor (completeness): re-scan the poor-quality documents (300 DPI")
               for line in lines)  # fmt: skip
    # the one fair scan per run is the worst of all, but 4 documents are not evidence
    fair = report["dimensions"]["scan_quality"]["completeness"]["slices"]["fair"]
    assert (fair["documents"], fair["evidence"]) == (4, "not enough evidence")
    assert "scan_quality=fair (4 documents)" in report["not_enough_evidence"]
    # TIFFs' confidence: a gap above max_difference whose interval reaches below it is chance
    tiff = report["dimensions"]["format"]["mean_confidence"]
    assert tiff["difference_interval"][0] < 0.2 and not tiff["flagged"]

    report_file = Path(lines[-1].removeprefix("report:  file://"))
    assert report_file.name == "bias_report.html" and report_file.parent.parent.name == "bias"
    html = report_file.read_text()
    assert "scan_quality=poor" in html and "re-scan the poor-quality documents" in html
    assert json.loads(report_file.with_suffix(".json").read_text())["flagged"] == report["flagged"]


def test_one_run_is_not_enough_evidence_to_flag_anything(window_settings):
    lines, report = bias_window("--runs", "1")

    assert lines[0].startswith("NO BIAS FLAGGED over 1 run (30 documents); ")
    assert report["window"]["runs"] == ["run-4"]
    assert "scan_quality=poor (4 documents)" in report["not_enough_evidence"]
