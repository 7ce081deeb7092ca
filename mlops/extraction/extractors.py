"""Extractors turn one document's bytes into an ``Extraction``: fields, document type, provenance.

``BuiltinExtractor`` reads the PDF text layer where there is one and OCRs the other pages with
Tesseract; it runs inside the sandboxed worker pool through the module-level
``extract_document``. ``HttpExtractor`` hands the document to an external extraction service
instead (a vendor API or an in-house model server) behind the same interface.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    RetryError,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from mlops.documents import iter_pages
from mlops.errors import MlopsError
from mlops.extraction.classifier import classify
from mlops.extraction.fields import parse_fields
from mlops.extraction.ocr import ocr_page
from mlops.models import DOCUMENT_TYPES, FIELD_NAMES, DocumentFormat, Extraction, FieldValue

CONTENT_TYPES = {
    DocumentFormat.PDF: "application/pdf",
    DocumentFormat.JPEG: "image/jpeg",
    DocumentFormat.PNG: "image/png",
    DocumentFormat.TIFF: "image/tiff",
}


class ExtractorUnavailable(MlopsError):
    """The external extraction service failed or answered nonsense after its retries
    (an infrastructure fault: the stage fails and Airflow retries it)."""


@dataclass(frozen=True)
class ExtractJob:
    sha256: str
    format: DocumentFormat
    data: bytes
    ocr_dpi: int
    text_layer_min_chars: int
    tesseract_cmd: str | None = None


class Extractor(ABC):
    name: str

    @abstractmethod
    def extract(self, job: ExtractJob) -> Extraction:
        """Fields, document type and provenance of one document."""


class BuiltinExtractor(Extractor):
    """Text layer first, Tesseract for pages without one.

    A page whose text layer has at least ``text_layer_min_chars`` characters is read as is
    (exact and ~1000x faster than OCR); any other page, including a scanned page inside a
    text PDF, is OCRed at ``ocr_dpi`` (scans are never upsampled beyond their own resolution).
    """

    name = "builtin"

    def extract(self, job: ExtractJob) -> Extraction:
        started = time.perf_counter()
        texts: list[str] = []
        ocr_confidences: list[float] = []
        text_layer_pages = 0
        for page in iter_pages(job.data, job.format, job.ocr_dpi):
            if len(page.text.strip()) >= job.text_layer_min_chars:
                texts.append(page.text)
                text_layer_pages += 1
                continue
            dpi = round(min(job.ocr_dpi, page.source_dpi)) if page.source_dpi else None
            text, confidence = ocr_page(page.image, dpi=dpi, cmd=job.tesseract_cmd)
            texts.append(text)
            ocr_confidences.append(confidence)
        ocr_pages = len(ocr_confidences)
        ocr_confidence = sum(ocr_confidences) / ocr_pages if ocr_pages else None
        full_text = "\n".join(texts)
        doc_type, doc_type_confidence = classify(full_text)
        return Extraction(
            sha256=job.sha256,
            extractor=self.name,
            doc_type=doc_type,
            doc_type_confidence=doc_type_confidence,
            text_source=_text_source(text_layer_pages, ocr_pages),
            pages=text_layer_pages + ocr_pages,
            text_layer_pages=text_layer_pages,
            ocr_pages=ocr_pages,
            ocr_confidence=None if ocr_confidence is None else round(ocr_confidence, 4),
            fields=parse_fields(full_text, ocr_confidence),
            seconds=round(time.perf_counter() - started, 3),
        )


def _text_source(text_layer_pages: int, ocr_pages: int) -> str:
    if ocr_pages and text_layer_pages:
        return "mixed"
    return "ocr" if ocr_pages else "text_layer"


class HttpExtractor(Extractor):
    """Delegates extraction to an HTTP service.

    Request: ``POST <url>`` with the raw document bytes as the body, ``Content-Type`` set to
    the document's MIME type, ``Authorization: Bearer <api_key>`` (omitted when there is no key)
    and ``X-Document-SHA256``.

    Expected JSON response::

        {"doc_type": "billing_statement",          # one of DOCUMENT_TYPES, or null
         "doc_type_confidence": 0.97,
         "fields": {"principal": {"value": 12345.67, "confidence": 0.99}, ...},
         "pages": 2}

    Unknown field names and unknown document types are dropped (to None). Transport errors,
    timeouts, 429 and 5xx answers are retried with exponential backoff; after the last attempt,
    or at once on any other 4xx (a wrong key or URL will not fix itself), ``ExtractorUnavailable``
    is raised.
    """

    name = "http"

    def __init__(
        self,
        url: str,
        api_key: str | None,
        timeout_seconds: float = 60.0,
        *,
        attempts: int = 4,
        backoff_seconds: float = 1.0,
    ):
        self.url = url
        self.api_key = api_key
        self.timeout_seconds = timeout_seconds
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds

    def extract(self, job: ExtractJob) -> Extraction:
        started = time.perf_counter()
        body = self._post_with_retries(job)
        try:
            return _from_response(job.sha256, self.name, body, time.perf_counter() - started)
        except (TypeError, ValueError, AttributeError) as error:
            raise ExtractorUnavailable(
                f"extraction service {self.url} returned an unexpected response for document "
                f"{job.sha256}: {error}"
            ) from None

    def _headers(self, job: ExtractJob) -> dict[str, str]:
        headers = {"Content-Type": CONTENT_TYPES[job.format], "X-Document-SHA256": job.sha256}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _post_with_retries(self, job: ExtractJob) -> Any:
        @retry(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_seconds, max=30),
        )
        def post() -> Any:
            response = httpx.post(
                self.url,
                content=job.data,
                headers=self._headers(job),
                timeout=self.timeout_seconds,
            )
            response.raise_for_status()
            return response.json()

        try:
            return post()
        except RetryError as error:
            last = error.last_attempt.exception()
            raise ExtractorUnavailable(
                f"extraction service {self.url} failed {self.attempts} times for document {job.sha256}: "
                f"{_describe(last)}; check the service, or switch extract.extractor to builtin"
            ) from last
        except httpx.HTTPStatusError as error:
            raise ExtractorUnavailable(
                f"extraction service {self.url} refused document {job.sha256}: {_describe(error)}; "
                "check the URL and the API key"
            ) from error
        except ValueError as error:
            raise ExtractorUnavailable(
                f"extraction service {self.url} returned invalid JSON for document {job.sha256}: {error}"
            ) from error


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code == 429 or error.response.status_code >= 500
    return isinstance(error, httpx.TransportError)


def _describe(error: BaseException | None) -> str:
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code} {error.response.reason_phrase}"
    return f"{type(error).__name__}: {error}"


def _from_response(sha256: str, extractor: str, body: Any, seconds: float) -> Extraction:
    doc_type = body.get("doc_type")
    fields = {
        name: FieldValue(
            value=entry.get("value"),
            raw=None if entry.get("value") is None else str(entry.get("value")),
            confidence=_unit(entry.get("confidence", 0.0)),
        )
        for name, entry in (body.get("fields") or {}).items()
        if name in FIELD_NAMES and isinstance(entry, dict) and entry.get("value") is not None
    }
    pages = int(body.get("pages") or 0)
    return Extraction(
        sha256=sha256,
        extractor=extractor,
        doc_type=doc_type if doc_type in DOCUMENT_TYPES else None,
        doc_type_confidence=_unit(body.get("doc_type_confidence", 0.0))
        if doc_type in DOCUMENT_TYPES
        else 0.0,
        text_source="external",
        pages=pages,
        text_layer_pages=0,
        ocr_pages=0,
        fields=fields,
        seconds=round(seconds, 3),
    )


def _unit(value: Any) -> float:
    return max(0.0, min(1.0, float(value or 0.0)))


def make_extractor(kind: str, **options: Any) -> Extractor:
    """``builtin`` (no options) or ``http`` (url, api_key, timeout_seconds, attempts, backoff_seconds)."""
    if kind == "builtin":
        return BuiltinExtractor()
    if kind == "http":
        return HttpExtractor(**options)
    raise ValueError(f"unknown extractor {kind!r}: use 'builtin' or 'http'")


def extract_document(job: ExtractJob) -> Extraction:
    """The process-pool entry point: the builtin extractor on one job (module-level, so picklable)."""
    return BuiltinExtractor().extract(job)
