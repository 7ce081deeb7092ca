"""Drift on real pipeline runs (every stage, OCR included) of generated corpora on one store: after
three clean runs, a reseeded clean corpus does not drift, a corpus whose scans were degraded on
purpose (downscaled to a third and blurred: a bad scanner setting) does, and so does a corpus
whose loans are three times larger."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageFilter, ImageSequence

from mlops import document_families
from mlops.io.metadata import MetadataStore
from mlops.io.objects import open_object_store
from mlops.monitoring.drift import DRIFT, NO_DRIFT, drift_for_run
from mlops.pipeline import run_all
from mlops.sample_data import LABELS_FILENAME, generate_corpus
from tests.fixtures.platform import TEST_MAX_FILE_BYTES, platform_settings

pytestmark = pytest.mark.integration
DOCUMENTS = 12
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


def degraded_scan(name: str, data: bytes) -> bytes:
    """The image at a third of its resolution, blurred; other files as they are."""
    if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
        return data
    with Image.open(io.BytesIO(data)) as image:
        image_format = image.format
        frames = [
            frame.convert("L").reduce(3).filter(ImageFilter.GaussianBlur(0.8)) for frame in ImageSequence.Iterator(image)
        ]
    out = io.BytesIO()
    frames[0].save(out, format=image_format, dpi=(50, 50), save_all=len(frames) > 1, append_images=frames[1:])
    return out.getvalue()


def tripled_principal(draw):
    def draw_values(*args, **kwargs):
        values = draw(*args, **kwargs)
        if isinstance(values["principal"], float) and values["principal"] > 0:
            values["principal"] = round(values["principal"] * 3, 2)
            values["monthly_payment"] = round(values["monthly_payment"] * 3, 2)
        return values

    return draw_values


def test_real_runs_drift_on_degraded_scans_and_shifted_principals_not_on_a_reseeded_corpus(tmp_path, monkeypatch):
    settings = platform_settings(tmp_path, monitoring={"baseline_verdicts": ["passed", "warning", "failed"]})
    store = open_object_store(settings)
    metadata = MetadataStore(settings.metadata_url)

    def run(name: str, seed: int, transform=lambda _name, data: data) -> str:
        def land(filename: str, data: bytes) -> None:
            if filename != LABELS_FILENAME:
                store.put_bytes(f"{settings.prefixes.landing}/{name}/{filename}", transform(filename, data))

        generate_corpus(DOCUMENTS, seed, land, max_file_bytes=TEST_MAX_FILE_BYTES, include_bad=False)
        summary = run_all(name, settings)
        assert summary["documents"]["accepted"] > DOCUMENTS // 2, summary["documents"]
        return name

    for seed in (1, 2, 3):
        run(f"clean-{seed}", seed)
    reseeded = drift_for_run(metadata, run("reseeded", 4), settings.monitoring)
    blurred = drift_for_run(metadata, run("degraded-scans", 5, degraded_scan), settings.monitoring)
    monkeypatch.setattr(document_families, "_draw_values", tripled_principal(document_families._draw_values))
    shifted = drift_for_run(metadata, run("tripled-principal", 6), settings.monitoring)

    assert reseeded.verdict == NO_DRIFT, [check.line() for check in reseeded.drifted()]
    assert blurred.verdict == DRIFT
    assert ("ocr_confidence", "ks") in {(check.field, check.statistic) for check in blurred.drifted()}, [
        check.line() for check in blurred.checks
    ]
    assert shifted.verdict == DRIFT
    assert ("principal", "ks") in {(check.field, check.statistic) for check in shifted.drifted()}, [
        check.line() for check in shifted.drifted()
    ]
