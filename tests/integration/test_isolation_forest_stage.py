"""detect_anomalies with its IsolationForest over a real metadata store (SQLite and Postgres):
the forest learns from the stored extractions of earlier runs, its findings name the detector,
score and threshold, and the model with its training window is kept in the run's catalog."""

from __future__ import annotations

import io

import joblib
import pytest

from mlops.stages import open_context, run_stage
from tests.fixtures.platform import platform_settings
from tests.unit.test_isolation_forest import loans, odd_batch

pytestmark = pytest.mark.integration
EXTRACTED_FROM_TEXT = {"extractor": "builtin", "doc_type_confidence": 0.9, "text_source": "text_layer", "pages": 1,
                       "text_layer_pages": 1, "ocr_pages": 0}  # fmt: skip


def stage_context(metadata_store, tmp_path, run_id: str):
    settings = platform_settings(
        tmp_path, metadata={"url": metadata_store.url.render_as_string(hide_password=False)}
    )
    ctx = open_context(run_id, settings)
    ctx.catalog.save_table("extract_data/part-0000", odd_batch())
    return ctx


def store_history(metadata_store, runs: range) -> None:
    for seed in runs:
        metadata_store.start_run(f"run-{seed}", "fingerprint", "1")
        rows = loans(50, seed, f"old{seed}").assign(**EXTRACTED_FROM_TEXT)
        metadata_store.save_extractions(f"run-{seed}", rows.to_dict("records"))
        metadata_store.finish_run(f"run-{seed}", "success", {}, verdict="passed")


def test_the_forest_learns_from_stored_runs_and_keeps_its_model_and_window(metadata_store, tmp_path):
    store_history(metadata_store, range(8))
    ctx = stage_context(metadata_store, tmp_path, "new-run")

    summary = run_stage("detect_anomalies", "new-run", ctx=ctx)

    forest = summary["isolation_forest"]
    assert summary["by_detector"]["isolation_forest"] == 3
    assert forest["trained"] and forest["history_rows"] == 400 and forest["runs"] == 8
    findings = ctx.catalog.load_records("detect_anomalies/findings")
    flagged = {row["sha256"] for row in findings if row["detector"] == "isolation_forest"}
    assert flagged == {"odd-double", "odd-third", "odd-long-term"}
    assert all(f"above threshold {forest['threshold']:.3f}" in row["reason"]
               for row in findings if row["detector"] == "isolation_forest")  # fmt: skip
    window = ctx.catalog.load_json("detect_anomalies/isolation_forest")
    assert (
        window["run_ids"] == [f"run-{seed}" for seed in range(8)]
        and window["trained_at"] == forest["trained_at"]
    )
    model = joblib.load(
        io.BytesIO(ctx.store.get_bytes(ctx.catalog.key("detect_anomalies/isolation_forest", "joblib")))
    )
    assert model.random_state == 7 and forest["model"].endswith(
        "runs/new-run/detect_anomalies/isolation_forest.joblib"
    )
    [event] = metadata_store.events("new-run", event="isolation_forest_trained")
    assert event["details"]["runs"] == 8


def test_with_too_little_history_the_summary_says_the_forest_was_skipped(metadata_store, tmp_path):
    store_history(metadata_store, range(2))
    ctx = stage_context(metadata_store, tmp_path, "early-run")

    summary = run_stage("detect_anomalies", "early-run", ctx=ctx)

    assert "isolation_forest" not in summary["by_detector"]
    assert summary["isolation_forest"]["skipped"] == (
        "100 stored extractions of earlier runs have every numeric field, 200 needed "
        "(anomalies.isolation_forest.min_history_rows)"
    )
    [event] = metadata_store.events("early-run", event="isolation_forest_skipped")
    assert "200 needed" in event["details"]["reason"]
    assert not ctx.store.exists(ctx.catalog.key("detect_anomalies/isolation_forest", "joblib"))
