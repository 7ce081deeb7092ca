"""Domain types passed between stages and persisted in the catalog and the metadata store."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class DocumentFormat(StrEnum):
    PDF = "pdf"
    JPEG = "jpeg"
    PNG = "png"
    TIFF = "tiff"


EXTENSIONS: dict[str, DocumentFormat] = {
    ".pdf": DocumentFormat.PDF,
    ".jpg": DocumentFormat.JPEG,
    ".jpeg": DocumentFormat.JPEG,
    ".png": DocumentFormat.PNG,
    ".tif": DocumentFormat.TIFF,
    ".tiff": DocumentFormat.TIFF,
}


class QuarantineReason(StrEnum):
    """The fixed list of reasons a document is quarantined (documented in README.md)."""

    EMPTY_FILE = "empty_file"  # zero bytes
    TOO_LARGE = "too_large"  # over limits.max_file_bytes
    UNSUPPORTED_FORMAT = "unsupported_format"  # magic bytes are not PDF, JPEG, PNG or TIFF
    EXTENSION_MISMATCH = "extension_mismatch"  # content format differs from the file extension
    CORRUPT = "corrupt"  # the parser cannot open it (truncated, damaged)
    ENCRYPTED = "encrypted"  # password-protected PDF
    DECOMPRESSION_BOMB = "decompression_bomb"  # a page over limits.max_image_pixels
    TOO_MANY_PAGES = "too_many_pages"  # over limits.max_pages
    TIMEOUT = "timeout"  # parsing took longer than limits.timeout_seconds
    RESOURCE_LIMIT = "resource_limit"  # the worker ran out of its memory cap or died


class DocumentStatus(StrEnum):
    ACQUIRED = "acquired"
    ACCEPTED = "accepted"
    QUARANTINED = "quarantined"
    PREPROCESSED = "preprocessed"
    EXTRACTED = "extracted"
    STORED = "stored"


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, use_enum_values=False)


class DocumentRecord(Record):
    """One unique document (identity: SHA-256 of its bytes) as acquired from the landing area."""

    sha256: str
    source_key: str
    original_filename: str
    size_bytes: int
    raw_key: str
    format: DocumentFormat | None = None
    pages: int | None = None


class DuplicateRecord(Record):
    """A landing object whose bytes equal a document already registered."""

    source_key: str
    sha256: str


class ValidationOutcome(Record):
    sha256: str
    accepted: bool
    format: DocumentFormat | None = None
    pages: int | None = None
    quarantine_reason: QuarantineReason | None = None
    detail: str = ""


class PageStats(Record):
    sha256: str
    page_index: int
    width_px: int
    height_px: int
    dpi: float | None
    sharpness: float
    noise: float
    clarity: float
    text_chars: int


class PreprocessRecord(Record):
    """Per-document measurements; near_duplicate_of names the earlier document it re-scans."""

    sha256: str
    format: DocumentFormat
    pages: int
    has_text_layer: bool
    clarity: float
    min_dpi: float | None
    phash: str
    fingerprint: str
    near_duplicate_of: str | None = None
    near_duplicate_distance: int | None = None
