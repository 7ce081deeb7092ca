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
    POISON = "poison"  # in a worker when a run died, limits.max_document_attempts times


class DocumentStatus(StrEnum):
    ACQUIRED = "acquired"
    ACCEPTED = "accepted"
    QUARANTINED = "quarantined"
    PREPROCESSED = "preprocessed"
    EXTRACTED = "extracted"
    STORED = "stored"


class RunOutcome(StrEnum):
    """What became of a run's work (``pipeline_runs.outcome``), apart from the gate's verdict."""

    RUNNING = "running"  # holds or held the store's lease and has not stopped
    COMPLETED = "completed"  # every stage ran and the report is written: see its verdict
    INTERRUPTED = "interrupted"  # stopped on request (SIGTERM, Ctrl-C); its documents go to the next run
    ABANDONED = "abandoned"  # its process died (lease expired); the next run took its documents over
    ERROR = "error"  # stopped on an infrastructure fault or a bug after its retries


class RunVerdict(StrEnum):
    """The quality gate's verdict on a completed run (``pipeline_runs.verdict``)."""

    PASSED = "passed"
    WARNING = "warning"
    FAILED = "failed"


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
    sharpness: float | None  # None on a page with a text layer: no scan to judge
    noise: float | None
    clarity: float | None
    text_chars: int


class PreprocessRecord(Record):
    """Per-document measurements; near_duplicate_of names the earlier document it re-scans."""

    sha256: str
    format: DocumentFormat
    pages: int
    has_text_layer: bool
    clarity: float | None  # mean over scanned pages; None when every page has a text layer
    min_dpi: float | None
    phash: str
    fingerprint: str
    near_duplicate_of: str | None = None
    near_duplicate_distance: int | None = None


FIELD_NAMES: tuple[str, ...] = (
    "borrower_name",
    "account_number",
    "servicer",
    "principal",
    "interest_rate",
    "disbursement_date",
    "term_months",
    "monthly_payment",
)
NUMERIC_FIELDS: tuple[str, ...] = ("principal", "interest_rate", "term_months", "monthly_payment")

DOCUMENT_TYPES: tuple[str, ...] = (
    "master_promissory_note",
    "disclosure_statement",
    "billing_statement",
    "deferment_forbearance_request",
    "idr_application",
    "enrollment_verification",
)
UNKNOWN_DOCUMENT_TYPE = "unknown"
"""The classifier's answer when no loan type is likely enough (a non-loan form, an unreadable page)."""

REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "master_promissory_note": FIELD_NAMES[:7],
    "disclosure_statement": FIELD_NAMES,
    "billing_statement": FIELD_NAMES[:5] + ("monthly_payment",),
    "deferment_forbearance_request": FIELD_NAMES[:5] + ("monthly_payment",),
    "idr_application": FIELD_NAMES[:5] + ("term_months", "monthly_payment"),
    "enrollment_verification": FIELD_NAMES[:4] + ("disbursement_date",),
}
"""The fields each document type carries: what its completeness is measured against."""


class FieldValue(Record):
    """One extracted field: the normalised value (str, float, int or ISO date string), the raw
    text it came from, and a confidence in [0, 1]."""

    value: str | float | int | None = None
    raw: str | None = None
    confidence: float = 0.0


class Extraction(Record):
    sha256: str
    extractor: str
    doc_type: str | None
    doc_type_confidence: float
    text_source: str  # text_layer | ocr | mixed | external
    pages: int
    text_layer_pages: int
    ocr_pages: int
    ocr_confidence: float | None = None
    fields: dict[str, FieldValue]
    seconds: float = 0.0

    def row(self) -> dict[str, object]:
        """A flat table row: one column per field value and one ``<field>_confidence`` column."""
        flat: dict[str, object] = self.model_dump(exclude={"fields"})
        for name in FIELD_NAMES:
            field = self.fields.get(name, FieldValue())
            flat[name] = field.value
            flat[f"{name}_confidence"] = field.confidence
        return flat


class Finding(Record):
    """An anomaly: which document, which field and value, which detector said so and why."""

    sha256: str
    field: str | None
    value: str | None
    detector: str
    severity: str  # warning | critical
    reason: str
