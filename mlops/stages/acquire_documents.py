"""acquire_documents: take what is new in the landing area into content-addressed raw storage.

A landing object is identified by (key, etag); its document by the SHA-256 of its bytes. Objects
an earlier run already took are skipped when their document was quarantined or fully processed
by this pipeline version; objects an unfinished earlier run took are picked up again, so
nothing is lost. Bytes equal to a registered document count as duplicates and are not
processed twice. The landing area itself is never modified.

Whoever writes to the landing area names its entries, so the listing is untrusted: entries that
are not regular files (links, FIFOs, devices, sockets), cannot be read, or have keys a server
could resolve elsewhere are refused without being opened; file names matching
``landing_ignore`` are ignored unless they end in a document extension. Both are set aside with
a reason: counted in the summary, listed in the ``set_aside`` table, refusals in the audit log.
The listing stops with an error after ``limits.listing_timeout_seconds``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import time
from collections import Counter
from pathlib import PurePosixPath
from typing import Any

from mlops.errors import ObjectNotFound
from mlops.io.objects import UNREADABLE, UNSAFE_NAME, ObjectInfo, RefusedEntry
from mlops.models import EXTENSIONS, DocumentRecord, DocumentStatus, DuplicateRecord
from mlops.progress import progress
from mlops.quarantine import raw_key_for
from mlops.recovery import clean_up_stopped_runs
from mlops.stages import StageContext
from mlops.workers import start_worker_server

STAGE = "acquire_documents"
HASH_CHUNK = 1024 * 1024
IGNORED = "ignored"
MAX_KEY_LENGTH = 1024  # documents.source_key and landing_objects.source_key

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> dict[str, Any]:
    clean_up_stopped_runs(ctx, STAGE)
    listed, set_aside = landing_entries(ctx)
    claims = ctx.metadata.landing_claims((obj.key, obj.etag) for obj in listed)
    finished = set() if ctx.reprocess else finished_documents(ctx, {claim["sha256"] for claim in claims.values()})

    unclaimed, skipped = [], 0
    for obj in listed:
        claim = claims.get((obj.key, obj.etag))
        if claim is None:
            unclaimed.append(obj)
        elif claim["run_id"] != ctx.run_id and claim["sha256"] in finished:
            skipped += 1
        elif claim["run_id"] != ctx.run_id:
            ctx.metadata.reassign_landing_object(obj.key, obj.etag, ctx.run_id)
            ctx.audit(STAGE, "resumed", sha256=claim["sha256"], key=obj.key, first_run=claim["run_id"])

    if ctx.max_documents:
        unclaimed = unclaimed[: ctx.max_documents]  # the rest waits for the next run
    if unclaimed and ctx.lease is not None:  # one process runs every stage (the CLI): they will need workers
        start_worker_server()
    for obj in progress(unclaimed, total=len(unclaimed), desc="acquire"):
        try:
            take(ctx, obj)
        except ObjectNotFound as error:  # removed, or replaced by something else, since it was listed
            listed.remove(obj)
            set_aside.append(RefusedEntry(obj.path, UNREADABLE, str(error)))

    for entry in set_aside:
        record_set_aside(ctx, entry)
    documents, duplicates = documents_of_run(ctx)
    ctx.catalog.save_table(f"{STAGE}/documents", documents)
    ctx.catalog.save_table(f"{STAGE}/duplicates", duplicates)
    ctx.catalog.save_table(f"{STAGE}/set_aside", [vars(entry) for entry in set_aside])
    reasons = Counter(entry.reason for entry in set_aside)
    deferred = len(listed) - skipped - len(ctx.metadata.landing_objects(ctx.run_id))
    summary = {
        "seen": len(listed) - deferred,
        "skipped": skipped,
        "new": len(listed) - skipped - deferred,
        "deferred": deferred,
        "documents": len(documents),
        "duplicates": len(duplicates),
        "ignored": reasons.pop(IGNORED, 0),
        "refused": sum(reasons.values()),
        "refused_reasons": dict(reasons),
    }
    return summary


def landing_entries(ctx: StageContext) -> tuple[list[ObjectInfo], list[RefusedEntry]]:
    """The landing objects to consider, and the entries set aside (refused or ignored) with why."""
    deadline = time.monotonic() + ctx.settings.limits.listing_timeout_seconds
    objects: list[ObjectInfo] = []
    set_aside: list[RefusedEntry] = []
    for entry in ctx.store.scan(ctx.settings.prefixes.landing, deadline, remember_etags=True):
        if isinstance(entry, RefusedEntry):
            set_aside.append(entry)
        elif len(entry.key) > MAX_KEY_LENGTH:
            detail = f"its key is longer than {MAX_KEY_LENGTH} characters"
            set_aside.append(RefusedEntry(entry.path, UNSAFE_NAME, detail))
        elif pattern := ignored_by(entry.name, ctx.settings.landing_ignore):
            set_aside.append(RefusedEntry(entry.name, IGNORED, f"matches landing_ignore pattern {pattern!r}"))
        else:
            objects.append(entry)
    return objects, set_aside


def ignored_by(name: str, patterns: list[str]) -> str | None:
    """The ignore pattern ``name`` matches; never one for a name with a document extension, so
    a pattern such as '.*' cannot swallow a document called '..\\x.pdf'."""
    if PurePosixPath(name).suffix.lower() in EXTENSIONS:
        return None
    return next((pattern for pattern in patterns if fnmatch.fnmatchcase(name, pattern)), None)


def record_set_aside(ctx: StageContext, entry: RefusedEntry) -> None:
    """Ignored names are logged; refusals are logged as warnings and audited."""
    if entry.reason == IGNORED:
        log.info("landing entry %s ignored: %s", entry.name, entry.detail)
        return
    log.warning("landing entry %s refused (%s): %s", entry.name, entry.reason, entry.detail)
    ctx.audit(STAGE, "refused", name=entry.name, reason=entry.reason, detail=entry.detail)


def finished_documents(ctx: StageContext, shas: set[str]) -> set[str]:
    """Those of ``shas`` processed by this pipeline version or quarantined, read in bulk (a
    no-op run over a large landing area asks a few queries, not one per object). ``reprocess``
    takes both again (a changed limit can release a quarantined document)."""
    processed = ctx.metadata.processed_among(shas, ctx.settings.pipeline_version)
    statuses = ctx.metadata.document_statuses(shas - processed)
    return processed | {sha for sha, status in statuses.items() if status == DocumentStatus.QUARANTINED}


def take(ctx: StageContext, obj: ObjectInfo) -> None:
    """Hash the landing object, copy it once into raw storage and register it; safe to repeat."""
    digest = hashlib.sha256()
    with ctx.store.open(obj) as stream:
        while chunk := stream.read(HASH_CHUNK):
            digest.update(chunk)
    sha256 = digest.hexdigest()
    raw_key = raw_key_for(ctx, sha256)
    existing = ctx.metadata.get_document(sha256)
    is_duplicate = existing is not None and existing["source_key"] != obj.key
    if not is_duplicate:
        if not ctx.store.exists(raw_key):
            ctx.store.copy(obj, raw_key)
        ctx.metadata.register_document(
            DocumentRecord(
                sha256=sha256,
                source_key=obj.key,
                original_filename=obj.name,
                size_bytes=obj.size,
                raw_key=raw_key,
            ),
            ctx.run_id,
        )
    ctx.metadata.claim_landing_object(ctx.run_id, obj.key, obj.etag, obj.size, sha256, is_duplicate)
    if is_duplicate:
        ctx.audit(STAGE, "duplicate", sha256=sha256, key=obj.key, original_key=existing["source_key"])
    else:
        ctx.audit(STAGE, "acquired", sha256=sha256, key=obj.key, size_bytes=obj.size)


def documents_of_run(ctx: StageContext) -> tuple[list[DocumentRecord], list[DuplicateRecord]]:
    """The run's documents and duplicates, rebuilt from the metadata store so a retry sees them all."""
    documents: dict[str, DocumentRecord] = {}
    duplicates = []
    for row in ctx.metadata.landing_objects(ctx.run_id):
        if row["is_duplicate"]:
            duplicates.append(DuplicateRecord(source_key=row["source_key"], sha256=row["sha256"]))
            continue
        document = ctx.metadata.get_document(row["sha256"])
        documents[row["sha256"]] = DocumentRecord(
            sha256=row["sha256"],
            source_key=document["source_key"],
            original_filename=document["original_filename"],
            size_bytes=document["size_bytes"],
            raw_key=raw_key_for(ctx, row["sha256"]),
        )
    return sorted(documents.values(), key=lambda doc: doc.source_key), duplicates
