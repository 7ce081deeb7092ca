"""What a run's stages share, read from the catalog and the stores: its acquired documents, their
bytes, the extractions table and the documents' file names. Stages never import each other;
they meet here."""

from __future__ import annotations

import pandas as pd

from mlops.errors import ObjectNotFound
from mlops.models import DocumentRecord
from mlops.quarantine import quarantine_key, raw_key_for
from mlops.stages import StageContext


def acquired_documents(ctx: StageContext) -> list[DocumentRecord]:
    """The run's documents as acquire_documents wrote them."""
    return [DocumentRecord(**row) for row in ctx.catalog.load_records("acquire_documents/documents")]


def read_document(ctx: StageContext, doc: DocumentRecord) -> bytes:
    """The document's bytes where this run recorded them or, when a stage has moved them since
    (quarantined by a retried task, released by validation), where they went."""
    keys = dict.fromkeys((doc.raw_key, raw_key_for(ctx, doc.sha256), quarantine_key(ctx, doc)))
    for key in keys:
        try:
            return ctx.store.get_bytes(key)
        except ObjectNotFound:
            continue
    raise ObjectNotFound(f"document {doc.sha256} ({doc.original_filename}) is at none of: {', '.join(keys)}")


def extractions(ctx: StageContext) -> pd.DataFrame:
    """The extracted table: every extract_data batch of the run."""
    return ctx.catalog.load_parts("extract_data")


def file_names(ctx: StageContext) -> dict[str, str]:
    """sha256 -> the file name people know, for the documents this run saw."""
    return {doc["sha256"]: doc["original_filename"] for doc in ctx.metadata.documents(run_id=ctx.run_id)}
