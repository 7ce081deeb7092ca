"""Quarantine: a rejected document's bytes move next to a machine-readable reason; nothing is deleted."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from mlops.models import DocumentRecord, DocumentStatus, QuarantineReason

if TYPE_CHECKING:
    from mlops.stages import StageContext


def quarantine_key(ctx: StageContext, doc: DocumentRecord) -> str:
    """Named after the landing key (a safe key), not original_filename (kept as it was, for people)."""
    return f"{ctx.settings.prefixes.quarantine}/{doc.sha256}/{PurePosixPath(doc.source_key).name}"


def quarantine(
    ctx: StageContext, stage: str, doc: DocumentRecord, reason: QuarantineReason, detail: str
) -> str:
    """Move the document to ``quarantine/<sha256>/<filename>`` with ``reason.json`` beside it.

    Safe to repeat: a retried task finds the bytes already moved and rewrites the same reason.
    """
    target = quarantine_key(ctx, doc)
    if ctx.store.exists(doc.raw_key):
        ctx.store.copy(doc.raw_key, target)
        ctx.store.delete(doc.raw_key)
    reason_record = {
        "sha256": doc.sha256,
        "source_key": doc.source_key,
        "original_filename": doc.original_filename,
        "reason": reason.value,
        "detail": detail,
        "stage": stage,
        "run_id": ctx.run_id,
        "quarantined_at": datetime.now(UTC).isoformat(),
    }
    reason_key = f"{PurePosixPath(target).parent}/reason.json"
    ctx.store.put_bytes(reason_key, json.dumps(reason_record, indent=2).encode(), content_type="application/json")
    ctx.metadata.update_document(
        doc.sha256,
        status=DocumentStatus.QUARANTINED,
        quarantine_reason=reason,
        quarantine_detail=detail,
        raw_key=target,
    )
    ctx.audit(stage, "quarantined", sha256=doc.sha256, reason=reason.value, detail=detail, key=target)
    return target
