"""Quarantine: a rejected document's bytes move next to a machine-readable reason; nothing is
deleted. And the guard that keeps one document from killing run after run (``poison``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from mlops.models import DocumentRecord, DocumentStatus, QuarantineReason
from mlops.workers import WorkerFailure, run_sandboxed

ATTEMPT_WINDOW_PER_WORKER = 8  # fresh documents counted per transaction, per worker

if TYPE_CHECKING:
    from mlops.stages import StageContext


def raw_key_for(ctx: StageContext, sha256: str) -> str:
    """Content-addressed: the same bytes always have the same key (quarantine moves them on)."""
    return f"{ctx.settings.prefixes.raw}/{sha256[:2]}/{sha256}"


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
    if doc.raw_key != target and ctx.store.exists(doc.raw_key):  # reprocessed: already there
        ctx.store.move(doc.raw_key, target)  # a rename on a local disk: no second copy's space
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
    ctx.metadata.flush_writes()  # the bytes have moved: their new key must not wait in a queue
    return target


def release(ctx: StageContext, stage: str, doc: DocumentRecord) -> None:
    """A quarantined document that passes validation again (``reprocess`` after a limit changed)
    moves back to raw storage; its old reason stays in the audit log."""
    held, raw_key = quarantine_key(ctx, doc), raw_key_for(ctx, doc.sha256)
    if ctx.store.exists(raw_key) or not ctx.store.exists(held):
        return
    ctx.store.move(held, raw_key)
    with suppress(Exception):
        ctx.store.delete(f"{PurePosixPath(held).parent}/reason.json")
    ctx.metadata.release_document(doc.sha256, raw_key)
    ctx.audit(stage, "released", sha256=doc.sha256, key=raw_key)
    ctx.metadata.flush_writes()


def run_untrusted(
    ctx: StageContext,
    stage: str,
    function: Callable[[Any], Any],
    docs: Sequence[DocumentRecord],
    make_job: Callable[[DocumentRecord], Any],
    desc: str,
) -> Iterator[tuple[DocumentRecord, Any]]:
    """``function`` on each document's job (which has a ``sha256``) in the sandboxed workers;
    yields (document, result or WorkerFailure) for the caller to record or quarantine.

    A worker's failure is already a verdict; this guards against what kills the run itself (the
    kernel's OOM killer, a crash in the main process). Each document's attempt is counted in the
    metadata store before its job goes to a worker and forgotten once the caller is done with
    its result, so a run that dies leaves counted the documents it held or had next in line. The next
    run takes those first, one at a time with nothing beside them, so a second death is pinned on
    one document; one counted ``limits.max_document_attempts`` times is not opened again but
    yielded as ``poison``, and the run goes on.
    """
    limit = ctx.settings.limits.max_document_attempts
    attempts = ctx.metadata.document_attempts(stage, [doc.sha256 for doc in docs])
    for doc in docs:
        if attempts.get(doc.sha256, 0) >= limit:
            detail = f"in a {stage} worker when a run died, {attempts[doc.sha256]} times: not opened again"
            yield doc, WorkerFailure(QuarantineReason.POISON, detail)
            ctx.metadata.end_attempts(stage, [doc.sha256])
    suspects = [doc for doc in docs if 0 < attempts.get(doc.sha256, 0) < limit]
    fresh = [doc for doc in docs if doc.sha256 not in attempts]
    by_sha = {doc.sha256: doc for doc in docs}
    held: set[str] = set()

    def jobs(group: Sequence[DocumentRecord], window: int) -> Iterator[Any]:
        for start in range(0, len(group), window):
            counted = [doc.sha256 for doc in group[start : start + window]]
            ctx.metadata.begin_attempts(counted, stage, ctx.run_id)
            held.update(counted)
            for doc in group[start : start + window]:
                yield make_job(doc)

    limits = ctx.settings.limits
    current = None
    try:
        for group, workers, label in ((suspects, 1, f"{desc} (one at a time)"), (fresh, ctx.settings.workers, desc)):
            # Suspects are counted one by one, so a second death is pinned on one document; fresh
            # ones a few at a time: one that was only next in line when the run died is a suspect
            # of the next run, run alone once, and cleared.
            window = 1 if workers == 1 else ATTEMPT_WINDOW_PER_WORKER * workers
            results = run_sandboxed(
                function, jobs(group, window), total=len(group), workers=workers,
                timeout_seconds=limits.timeout_seconds, memory_mb=limits.worker_memory_mb, desc=label,
            )
            for job, result in results:
                current = job.sha256
                yield by_sha[current], result
                ctx.metadata.end_attempts(stage, [current])
                held.discard(current)
                current = None
    except BaseException:
        # The run stops for a reason of its own: the documents in the workers are not to blame
        # (the one the caller was busy with may be, and stays counted).
        with suppress(Exception):
            ctx.metadata.end_attempts(stage, held - {current})
        raise
