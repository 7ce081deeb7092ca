"""validate_documents: accept only documents that are what they claim to be and safe to parse.

Checks the size limit before reading, then opens each document in a sandboxed worker
(time limit, memory cap): magic bytes against the extension, encryption, page count,
decompression bombs (pages as rendered at ``limits.max_render_dpi``, the highest DPI of any
stage), and whether every page actually opens. Rejected documents are quarantined with a reason
from ``QuarantineReason``, whatever failed on their bytes (see mlops.workers); the run goes on.
Each outcome is recorded as soon as it is known.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mlops.documents import InspectJob, inspect_document
from mlops.models import DocumentRecord, DocumentStatus, QuarantineReason, ValidationOutcome
from mlops.quarantine import quarantine, release, run_untrusted
from mlops.run_data import acquired_documents, read_document
from mlops.stages import StageContext
from mlops.workers import WorkerFailure

STAGE = "validate_documents"


def run(ctx: StageContext) -> dict[str, Any]:
    documents = acquired_documents(ctx)
    outcomes: dict[str, ValidationOutcome] = {}
    for doc, outcome in validate(ctx, documents):
        if outcome.accepted:
            release(ctx, STAGE, doc)
            ctx.metadata.update_document(doc.sha256, status=DocumentStatus.ACCEPTED, format=outcome.format, pages=outcome.pages)
            ctx.audit(STAGE, "accepted", sha256=doc.sha256, format=outcome.format.value, pages=outcome.pages)
        else:
            quarantine(ctx, STAGE, doc, outcome.quarantine_reason, outcome.detail)
        outcomes[doc.sha256] = outcome
    ctx.catalog.save_table(f"{STAGE}/outcomes", [outcomes[doc.sha256] for doc in documents])
    accepted = sum(outcome.accepted for outcome in outcomes.values())
    return {"validated": len(outcomes), "accepted": accepted, "quarantined": len(outcomes) - accepted}


def validate(ctx: StageContext, documents: list[DocumentRecord]) -> Iterator[tuple[DocumentRecord, ValidationOutcome]]:
    """Each document's outcome as soon as it is known (the caller records it before the next)."""
    max_file_bytes = ctx.settings.limits.max_file_bytes
    for doc in documents:
        if doc.size_bytes > max_file_bytes:
            detail = f"{doc.size_bytes:,} bytes, limit {max_file_bytes:,}"
            yield doc, _rejection(doc, WorkerFailure(QuarantineReason.TOO_LARGE, detail))
    to_open = [doc for doc in documents if doc.size_bytes <= max_file_bytes]
    for doc, result in run_untrusted(ctx, STAGE, inspect_document, to_open, lambda doc: _job(ctx, doc), "validate"):
        yield doc, _rejection(doc, result) if isinstance(result, WorkerFailure) else result


def _rejection(doc: DocumentRecord, failure: WorkerFailure) -> ValidationOutcome:
    return ValidationOutcome(sha256=doc.sha256, accepted=False, quarantine_reason=failure.reason, detail=failure.detail)


def _job(ctx: StageContext, doc: DocumentRecord) -> InspectJob:
    limits = ctx.settings.limits
    return InspectJob(
        sha256=doc.sha256,
        filename=doc.original_filename,
        data=read_document(ctx, doc),
        max_pages=limits.max_pages,
        max_image_pixels=limits.max_image_pixels,
        render_dpi=limits.max_render_dpi,
    )
