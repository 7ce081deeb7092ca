"""What a run's stages share, read from the catalog and the stores: its acquired documents, their
bytes, the extractions table and the documents' file names. Stages never import each other;
they meet here."""

from __future__ import annotations

import pandas as pd

from mlops.errors import ObjectNotFound
from mlops.models import DocumentRecord
from mlops.quarantine import quarantine_key
from mlops.stages import StageContext


def acquired_documents(ctx: StageContext) -> list[DocumentRecord]:
    """The run's documents as acquire_documents wrote them."""
    return [DocumentRecord(**row) for row in ctx.catalog.load_records("acquire_documents/documents")]


def read_document(ctx: StageContext, doc: DocumentRecord) -> bytes:
    """The document's bytes, from raw storage or, when a retried task already moved it, quarantine."""
    try:
        return ctx.store.get_bytes(doc.raw_key)
    except ObjectNotFound:
        return ctx.store.get_bytes(quarantine_key(ctx, doc))


def extractions(ctx: StageContext) -> pd.DataFrame:
    """The extracted table: every extract_data batch of the run."""
    return ctx.catalog.load_parts("extract_data")


def file_names(ctx: StageContext) -> dict[str, str]:
    """sha256 -> the file name people know, for the documents this run saw."""
    return {doc["sha256"]: doc["original_filename"] for doc in ctx.metadata.documents(run_id=ctx.run_id)}
