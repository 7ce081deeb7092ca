"""validate_documents: accept only documents that are what they claim to be and safe to parse.

Checks the size limit before reading, then opens each document in a sandboxed worker
(time limit, memory cap): magic bytes against the extension, encryption, page count,
decompression bombs, and whether every page actually opens. Rejected documents are
quarantined with a reason from ``QuarantineReason``; the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mlops.documents import InspectJob, inspect_document
from mlops.errors import ObjectNotFound
from mlops.models import DocumentRecord, DocumentStatus, QuarantineReason, ValidationOutcome
from mlops.quarantine import quarantine, quarantine_key
from mlops.stages import StageContext
from mlops.stages.acquire_documents import acquired_documents
from mlops.workers import WorkerFailure

STAGE = "validate_documents"


def run(ctx: StageContext) -> dict[str, Any]:
    documents = acquired_documents(ctx)
    outcomes = validate(ctx, documents)
    by_sha = {doc.sha256: doc for doc in documents}
    for outcome in outcomes:
        doc = by_sha[outcome.sha256]
        if outcome.accepted:
            ctx.metadata.update_document(doc.sha256, status=DocumentStatus.ACCEPTED, format=outcome.format, pages=outcome.pages)
            ctx.audit(STAGE, "accepted", sha256=doc.sha256, format=outcome.format.value, pages=outcome.pages)
        else:
            quarantine(ctx, STAGE, doc, outcome.quarantine_reason, outcome.detail)
    ctx.catalog.save_table(f"{STAGE}/outcomes", outcomes)
    accepted = sum(outcome.accepted for outcome in outcomes)
    return {"validated": len(outcomes), "accepted": accepted, "quarantined": len(outcomes) - accepted}


def validate(ctx: StageContext, documents: list[DocumentRecord]) -> list[ValidationOutcome]:
    limits = ctx.settings.limits
    too_large = [doc for doc in documents if doc.size_bytes > limits.max_file_bytes]
    to_open = [doc for doc in documents if doc.size_bytes <= limits.max_file_bytes]
    outcomes = {
        doc.sha256: ValidationOutcome(
            sha256=doc.sha256,
            accepted=False,
            quarantine_reason=QuarantineReason.TOO_LARGE,
            detail=f"{doc.size_bytes:,} bytes, limit {limits.max_file_bytes:,}",
        )
        for doc in too_large
    }
    results = ctx.in_workers(inspect_document, _jobs(ctx, to_open), len(to_open), "validate")
    for job, result in results:
        if isinstance(result, WorkerFailure):
            result = ValidationOutcome(
                sha256=job.sha256, accepted=False, quarantine_reason=result.reason, detail=result.detail
            )
        outcomes[job.sha256] = result
    return [outcomes[doc.sha256] for doc in documents]


def read_document(ctx: StageContext, doc: DocumentRecord) -> bytes:
    """The document's bytes, from raw storage or, when a retried task already moved it, quarantine."""
    try:
        return ctx.store.get_bytes(doc.raw_key)
    except ObjectNotFound:
        return ctx.store.get_bytes(quarantine_key(ctx, doc))


def _jobs(ctx: StageContext, documents: list[DocumentRecord]) -> Iterator[InspectJob]:
    limits = ctx.settings.limits
    for doc in documents:
        yield InspectJob(
            sha256=doc.sha256,
            filename=doc.original_filename,
            data=read_document(ctx, doc),
            max_pages=limits.max_pages,
            max_image_pixels=limits.max_image_pixels,
        )
