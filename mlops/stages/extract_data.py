"""extract_data: text (PDF text layer, else Tesseract OCR), fields and document type.

The preprocessed documents are split into batches of ``batch_size`` (sorted by sha256, so a
batch means the same documents on every retry); Airflow maps one task over each batch, the
CLI and DVC run them all through one worker pool. Each batch writes ``extract_data/part-NNNN.parquet``. OCR runs in
the sandboxed pool: one single-threaded Tesseract per worker process, and a document that
kills runs is set aside as poison like in validate and preprocess.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import suppress
from itertools import chain
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mlops.errors import ObjectNotFound
from mlops.models import DocumentFormat, DocumentRecord, DocumentStatus, Extraction
from mlops.quarantine import quarantine, run_untrusted
from mlops.run_data import acquired_documents, read_document
from mlops.stages import StageContext, batch_count
from mlops.workers import WorkerFailure

if TYPE_CHECKING:
    from mlops.extraction.extractors import ExtractJob

STAGE = "extract_data"


def documents_to_extract(ctx: StageContext) -> list[tuple[DocumentRecord, DocumentFormat]]:
    acquired = {doc.sha256: doc for doc in acquired_documents(ctx)}
    preprocessed = ctx.catalog.load_table("preprocess_documents/documents")
    if preprocessed.empty:
        return []
    preprocessed = preprocessed.sort_values("sha256")
    return [(acquired[row.sha256], DocumentFormat(row.format)) for row in preprocessed.itertuples()]


def run(ctx: StageContext, batch: int | None = None) -> dict[str, Any]:
    documents = documents_to_extract(ctx)
    size = ctx.settings.batch_size
    numbers = range(batch_count(len(documents), size)) if batch is None else [batch]
    totals = {"documents": 0, "text_layer_pages": 0, "ocr_pages": 0, "quarantined": 0}
    for counts in extract_batches(ctx, {number: documents[number * size : (number + 1) * size] for number in numbers}):
        for key, value in counts.items():
            totals[key] += value
    return totals if batch is None else {"batch": batch, **totals}


def extract_batches(
    ctx: StageContext, batches: dict[int, list[tuple[DocumentRecord, DocumentFormat]]]
) -> Iterator[dict[str, int]]:
    """Extract the batches' documents in one pass through one worker pool, writing each batch's
    part as soon as its last document is done; yields each batch's counts."""
    cache = ExtractionCache(ctx)
    batch_of = {doc.sha256: number for number, items in batches.items() for doc, _ in items}
    waiting = {number: len(items) for number, items in batches.items()}
    extractions: dict[int, list[Extraction]] = {number: [] for number in batches}
    quarantined = dict.fromkeys(batches, 0)
    todo = [item for items in batches.values() for item in items]
    done = {} if ctx.reprocess else cache.load([doc for doc, _ in todo])
    if done:  # counted by a run killed before its bookkeeping was written: done with them all the same
        ctx.metadata.end_attempts(STAGE, [doc.sha256 for doc in done])
    for number, items in batches.items():
        if reused := sum(doc in done for doc, _ in items):
            ctx.audit(STAGE, "extractions_reused", batch=number, documents=reused)
    for number in [number for number, count in waiting.items() if count == 0]:
        yield _save_batch(ctx, number, [], 0)
    for doc, result in chain(done.items(), _extract(ctx, [item for item in todo if item[0] not in done])):
        number = batch_of[doc.sha256]
        if isinstance(result, WorkerFailure):
            quarantine(ctx, STAGE, doc, result.reason, f"extraction: {result.detail}")
            quarantined[number] += 1
        else:
            if doc not in done:
                cache.save(result)
            extractions[number].append(result)
            ctx.metadata.update_document(doc.sha256, status=DocumentStatus.EXTRACTED)
        waiting[number] -= 1
        if waiting[number] == 0:
            yield _save_batch(ctx, number, extractions.pop(number), quarantined[number])


def _save_batch(ctx: StageContext, number: int, extractions: list[Extraction], quarantined: int) -> dict[str, int]:
    ctx.catalog.save_table(f"{STAGE}/part-{number:04d}", [extraction.row() for extraction in extractions])
    ctx.audit(STAGE, "batch_extracted", batch=number, documents=len(extractions), extractor=ctx.settings.extract.extractor)
    return {
        "documents": len(extractions),
        "text_layer_pages": sum(extraction.text_layer_pages for extraction in extractions),
        "ocr_pages": sum(extraction.ocr_pages for extraction in extractions),
        "quarantined": quarantined,
    }


class ExtractionCache:
    """Each document's extraction, saved the moment it is done, under a key of everything that
    shapes it (pipeline and model version, extractor, OCR and date settings). A run that was
    killed, a retried task or a run that takes over another's documents reuses them instead of
    reading the pages again; ``reprocess`` ignores them."""

    def __init__(self, ctx: StageContext) -> None:
        settings = ctx.settings
        shaping = {
            "pipeline_version": settings.pipeline_version,
            "extract": settings.extract.model_dump(mode="json", exclude={"http_api_key", "tesseract_cmd", "model_dir"}),
            "text_layer_min_chars": settings.preprocess.text_layer_min_chars,
        }
        digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]
        self.store, self.prefix = ctx.store, f"{settings.prefixes.runs}/_extractions/{digest}"

    def key(self, sha256: str) -> str:
        return f"{self.prefix}/{sha256[:2]}/{sha256}.json"

    def load(self, documents: list[DocumentRecord]) -> dict[DocumentRecord, Extraction]:
        found = {}
        for doc in documents:
            with suppress(ObjectNotFound, ValidationError):  # torn by a power failure: extracted again
                found[doc] = Extraction.model_validate_json(self.store.get_bytes(self.key(doc.sha256)))
        return found

    def save(self, extraction: Extraction) -> None:
        self.store.put_bytes(self.key(extraction.sha256), extraction.model_dump_json().encode(),
                             content_type="application/json", durable=False)  # fmt: skip


def _extract(
    ctx: StageContext, documents: list[tuple[DocumentRecord, DocumentFormat]]
) -> Iterator[tuple[DocumentRecord, Any]]:
    if not documents:
        return
    # The extractors import scikit-learn and the OCR engine (~2 s): not in a run with nothing new.
    from mlops.extraction.extractors import extract_document, make_extractor
    from mlops.extraction.ocr import ensure_tesseract
    from mlops.extraction.trained_models import load_models

    settings = ctx.settings
    formats = {doc.sha256: doc_format for doc, doc_format in documents}
    if settings.extract.extractor == "http":
        extractor = make_extractor(
            "http",
            url=settings.extract.http_url,
            api_key=settings.extract.http_api_key.get_secret_value() if settings.extract.http_api_key else None,
            timeout_seconds=settings.extract.http_timeout_seconds,
        )
        for doc, doc_format in documents:
            yield doc, extractor.extract(_job(ctx, doc, doc_format))
        return
    ensure_tesseract(settings.extract.tesseract_cmd)
    load_models(str(settings.extractor_model_file))
    # the longest OCR jobs first, so the last ones to finish are short and no core waits long
    scanned = _scanned_pages(ctx)
    docs = sorted((doc for doc, _ in documents), key=lambda doc: -scanned.get(doc.sha256, 0))
    yield from run_untrusted(ctx, STAGE, extract_document, docs, lambda doc: _job(ctx, doc, formats[doc.sha256]), "extract")


def _scanned_pages(ctx: StageContext) -> dict[str, int]:
    """Pages without a text layer (those Tesseract reads) per document."""
    pages = ctx.catalog.load_table("preprocess_documents/pages")
    if pages.empty:
        return {}
    scanned = pages[pages["text_chars"] < ctx.settings.preprocess.text_layer_min_chars]
    return scanned.groupby("sha256").size().to_dict()


def _job(ctx: StageContext, doc: DocumentRecord, doc_format: DocumentFormat) -> ExtractJob:
    from mlops.extraction.extractors import ExtractJob

    settings = ctx.settings
    return ExtractJob(
        sha256=doc.sha256,
        format=doc_format,
        data=read_document(ctx, doc),
        ocr_dpi=settings.extract.ocr_dpi,
        text_layer_min_chars=settings.preprocess.text_layer_min_chars,
        model_file=str(settings.extractor_model_file),
        day_first=settings.extract.date_order == "day_first",
        tesseract_cmd=settings.extract.tesseract_cmd,
    )
