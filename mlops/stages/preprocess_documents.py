"""preprocess_documents: measure every accepted document before extraction.

Each page's size, DPI, text layer and clarity, and each document's perceptual hash, come from
:mod:`mlops.page_measures` in the sandboxed workers; here the hashes are matched against this
run and every earlier one to find re-scanned near-duplicates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops.io.phash_index import PhashIndex
from mlops.models import DocumentFormat, DocumentRecord, DocumentStatus, PreprocessRecord
from mlops.page_measures import MeasureJob, measure_document
from mlops.quarantine import quarantine, run_untrusted
from mlops.run_data import acquired_documents, read_document
from mlops.stages import StageContext, batch_count
from mlops.workers import WorkerFailure

STAGE = "preprocess_documents"


def link_near_duplicates(
    records: list[PreprocessRecord], history: Mapping[str, tuple[int, str]], max_distance: int
) -> list[PreprocessRecord]:
    """Point each record at the closest earlier document: ``history`` holds each record's closest
    document of earlier runs as (distance, sha256) (:meth:`MetadataStore.nearest_phashes`), and
    records earlier in this run count too; ties go to the smaller sha256."""
    this_run = PhashIndex(max_distance)
    linked = []
    for record in records:
        matches = (history.get(record.sha256), this_run.nearest(record.sha256, record.phash))
        if found := [match for match in matches if match]:
            distance, closest = min(found)
            record = record.model_copy(update={"near_duplicate_of": closest, "near_duplicate_distance": distance})
        linked.append(record)
        this_run.add(record.sha256, record.phash)
    return linked


def run(ctx: StageContext) -> dict[str, Any]:
    documents = {doc.sha256: doc for doc in acquired_documents(ctx)}
    outcomes = ctx.catalog.load_table("validate_documents/outcomes")
    formats = {row["sha256"]: DocumentFormat(row["format"]) for row in outcomes.to_dict("records") if row["accepted"]}
    accepted = [documents[sha] for sha in formats]
    settings = ctx.settings
    results = run_untrusted(
        ctx, STAGE, measure_document, accepted, lambda doc: _job(ctx, doc, formats[doc.sha256]), "preprocess"
    )
    records, pages, quarantined = [], [], 0
    for doc, result in results:
        if isinstance(result, WorkerFailure):
            quarantine(ctx, STAGE, doc, result.reason, result.detail)
            quarantined += 1
            continue
        records.append(result[0])
        pages.extend(result[1])
    order = {sha: index for index, sha in enumerate(formats)}  # validation's order, whatever ran first
    records.sort(key=lambda record: order[record.sha256])
    pages.sort(key=lambda page: (order[page.sha256], page.page_index))
    max_distance = settings.preprocess.near_duplicate_max_distance
    history = ctx.metadata.nearest_phashes(
        [(record.sha256, record.phash) for record in records], max_distance, exclude_run_id=ctx.run_id
    )
    records = link_near_duplicates(records, history, max_distance)
    ctx.catalog.save_table(f"{STAGE}/documents", records)
    ctx.catalog.save_table(f"{STAGE}/pages", pages)
    ctx.metadata.save_preprocess_results(ctx.run_id, records)
    for record in records:
        ctx.metadata.update_document(record.sha256, status=DocumentStatus.PREPROCESSED)
        if record.near_duplicate_of:
            ctx.audit(STAGE, "near_duplicate", sha256=record.sha256, of=record.near_duplicate_of,
                      distance=record.near_duplicate_distance)
    return {
        "preprocessed": len(records),
        "pages": len(pages),
        "near_duplicates": sum(record.near_duplicate_of is not None for record in records),
        "quarantined": quarantined,
        "batches": list(range(batch_count(len(records), settings.batch_size))),
    }


def _job(ctx: StageContext, doc: DocumentRecord, doc_format: DocumentFormat) -> MeasureJob:
    settings = ctx.settings.preprocess
    return MeasureJob(doc.sha256, doc_format, read_document(ctx, doc), settings.render_dpi, settings.text_layer_min_chars)
