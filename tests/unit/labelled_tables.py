"""Extracted tables as a perfect extractor would return them for a sample corpus: the values the
corpus generator (mlops.sample_data) plans for its documents, with seeded confidences. Stand-ins
for clean runs in drift and suggested-expectation tests: the values, types, formats, anomalies
and duplicates are the generator's; the confidences are invented. The plan is taken without
rendering a page (``_plan``: ~100 times cheaper than writing the corpus)."""

from __future__ import annotations

import hashlib
import random
from datetime import date

import pandas as pd

from mlops.io.metadata import MetadataStore
from mlops.models import FIELD_NAMES
from mlops.monitoring.statistics import field_statistics
from mlops.sample_data import _plan

CATEGORICAL = ["extractor", "doc_type", "text_source", "servicer"]
STATUS_OF_VERDICT = {"passed": "success", "warning": "partial", "failed": "failed"}


def labelled_table(seed: int, count: int = 24) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for slot in _plan(count, seed):
        if slot.duplicate_of is not None:  # registered once: not extracted again
            continue
        scanned = slot.kind != "text_pdf"
        row: dict[str, object] = {
            "sha256": hashlib.sha256(f"{seed}:{slot.index}".encode()).hexdigest(), "extractor": "builtin",
            "doc_type": slot.doc_type, "doc_type_confidence": rng.uniform(0.7, 1.0),
            "text_source": "ocr" if scanned else "text_layer", "pages": slot.pages,
            "text_layer_pages": 0 if scanned else slot.pages, "ocr_pages": slot.pages if scanned else 0,
            "ocr_confidence": rng.uniform(0.8, 0.95) if scanned else None, "seconds": 0.5,
        }  # fmt: skip
        for name in FIELD_NAMES:
            value = slot.document.values.get(name)
            value = value.isoformat() if isinstance(value, date) else value
            row[name] = value
            row[f"{name}_confidence"] = rng.uniform(0.75, 1.0) if value is not None else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def degraded(
    frame: pd.DataFrame, seed: int = 0, lost: float = 0.5, confidence_drop: float = 0.3
) -> pd.DataFrame:
    """What a blurred, low-DPI scan does to OCRed documents: fields lost, confidence down."""
    rng = random.Random(seed)
    frame = frame.copy()
    scanned = frame["text_source"] == "ocr"
    for name in FIELD_NAMES:
        for index in frame.index[scanned]:
            if rng.random() < lost:
                frame.loc[index, [name, f"{name}_confidence"]] = [None, 0.0]
            elif frame.loc[index, name] is not None:
                frame.loc[index, f"{name}_confidence"] -= confidence_drop
    frame.loc[scanned, "ocr_confidence"] -= confidence_drop
    return frame


def store_run(store: MetadataStore, run_id: str, frame: pd.DataFrame, verdict: str = "passed") -> None:
    """A completed run in the metadata store as store_results and generate_reports leave it:
    its extractions, their field statistics and the gate's verdict."""
    store.start_run(run_id, "fingerprint", "1")
    store.save_extractions(run_id, frame.to_dict("records"))
    store.replace_field_statistics(run_id, field_statistics(frame, categorical_fields=CATEGORICAL))
    store.finish_run(run_id, STATUS_OF_VERDICT[verdict], {}, verdict=verdict)
