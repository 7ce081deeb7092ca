"""What field extraction adds to a page, the issue-7 targets: no more than 5 ms on a text-layer
page, no more than 10% of the page's OCR time on a scan.

Documents come from the sample generator's layout families (every family, every document type,
in turn); each is read the way the pipeline's worker reads it (``read_layouts``), then timed in
its steps, best of ``repeat`` passes per document so a busy shared machine inflates the figures
less:

- ``layout``: the page as words with geometry (text layer; for scans, Tesseract is ``ocr``);
- ``fields``: candidates, their features and the ranker's pick (what issue 7 calls field
  extraction);
- ``doc_type``: the document-type model.

Figures are milliseconds per page (a document's time over its pages), median and 90th percentile.

    .venv/bin/python benchmarks/extraction_cost.py [--text 200] [--scans 12] [--repeat 5]

A measurement, not a test: it never fails on a number.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlops.config import Settings
from mlops.document_families import FAMILIES, make_document, page_count, render
from mlops.extraction.candidates import candidate_text, feature_table
from mlops.extraction.extractors import ExtractJob, read_layouts
from mlops.extraction.trained_models import load_models
from mlops.models import DOCUMENT_TYPES
from mlops.sample_rendering import KIND_FORMATS

SCAN_KINDS = ("image_pdf", "png", "jpeg", "tiff")


def _best_of(repeat: int, work, *args) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work(*args)
        best = min(best, time.perf_counter() - started)
    return best


def _extract_fields(models, layouts) -> None:
    by_index = {layout.index: layout for layout in layouts}
    table = feature_table(layouts, models.lexicon)
    models.ranker.pick(table, lambda candidate: candidate_text(by_index, candidate))


def _summary(per_page_ms: list[float]) -> dict[str, float]:
    ordered = sorted(per_page_ms)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
    }


def measure(kind: str, count: int, repeat: int, model_file: str, settings: Settings, seed: int = 7) -> dict:
    models = load_models(model_file)
    steps: dict[str, list[float]] = {"layout": [], "fields": [], "doc_type": []}
    pages_total = 0
    for i in range(count):
        rng = random.Random(f"{seed}:cost:{kind}:{i}")
        render_kind = "text_pdf" if kind == "text" else SCAN_KINDS[i % len(SCAN_KINDS)]
        family, doc_type = FAMILIES[i % len(FAMILIES)], DOCUMENT_TYPES[i % len(DOCUMENT_TYPES)]
        document = make_document(family, doc_type, f"{seed}:cost:{kind}:{i}", page_count(render_kind, rng))
        data, _ = render(document, render_kind, rng)
        job = ExtractJob(
            sha256=str(i),
            format=KIND_FORMATS[render_kind],
            data=data,
            ocr_dpi=settings.extract.ocr_dpi,
            text_layer_min_chars=settings.preprocess.text_layer_min_chars,
        )
        started = time.perf_counter()
        layouts = list(read_layouts(job))
        layout_seconds = time.perf_counter() - started  # OCR is not repeated: it dwarfs the rest
        text = "\n".join(layout.text for layout in layouts)
        pages = len(layouts)
        pages_total += pages
        steps["layout"].append(1000 * layout_seconds / pages)
        steps["fields"].append(1000 * _best_of(repeat, _extract_fields, models, layouts) / pages)
        steps["doc_type"].append(1000 * _best_of(repeat, models.doctype.predict, text) / pages)
    result = {"documents": count, "pages": pages_total, **{step: _summary(ms) for step, ms in steps.items()}}
    if kind == "scans":
        result["fields_vs_ocr"] = round(result["fields"]["median_ms"] / result["layout"]["median_ms"], 4)
    return result


def measure_extraction_cost(text: int = 200, scans: int = 12, repeat: int = 5) -> dict:
    settings = Settings()
    model_file = str(settings.extractor_model_file)
    figures = {"text_layer": measure("text", text, repeat, model_file, settings)}
    if scans:
        figures["scans"] = measure("scans", scans, repeat, model_file, settings)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=int, default=200, help="text PDFs (default 200)")
    parser.add_argument("--scans", type=int, default=12, help="scanned documents (default 12)")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes, the best counts (default 5)")
    args = parser.parse_args()
    print(json.dumps(measure_extraction_cost(args.text, args.scans, args.repeat), indent=2))


if __name__ == "__main__":
    main()
