"""Extractors turn one document's bytes into an ``Extraction``: fields, document type, provenance.

``BuiltinExtractor`` reads the PDF text layer where there is one and OCRs the other pages with
Tesseract, both into one page model (words with geometry), then ranks field candidates with the
trained models; it runs inside the sandboxed worker pool through the module-level
``extract_document``. ``HttpExtractor`` hands the document to an external extraction service
instead (a vendor API or an in-house model server) behind the same interface.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
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

from mlops.documents import iter_pages, open_pdf, render_pdf_page
from mlops.errors import MlopsError
from mlops.extraction.candidates import candidate_text, feature_table
from mlops.extraction.layout import PageLayout, text_layer_layout
from mlops.extraction.ocr import ocr_page
from mlops.extraction.trained_models import load_models
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
    model_file: str = ""
    day_first: bool = False
    tesseract_cmd: str | None = None


class Extractor(ABC):
    name: str

    @abstractmethod
    def extract(self, job: ExtractJob) -> Extraction:
        """Fields, document type and provenance of one document."""


def read_layouts(job: ExtractJob) -> Iterator[PageLayout]:
    """Each page as words with geometry: from the text layer when it has at least
    ``text_layer_min_chars`` characters (exact and ~1000x faster than OCR), else from Tesseract at
    ``ocr_dpi`` (scans are never upsampled beyond their own resolution). Text-layer pages are
    never rendered."""
    if job.format is DocumentFormat.PDF:
        with open_pdf(job.data) as pdf:
            for index in range(len(pdf)):
                page = pdf[index]
                layout = text_layer_layout(page, index)
                if sum(len(line.text) for line in layout.lines) < job.text_layer_min_chars:
                    image, source_dpi = render_pdf_page(page, job.ocr_dpi)
                    layout = _ocr(job, image, index, source_dpi)
                page.close()
                yield layout
        return
    for page in iter_pages(job.data, job.format, job.ocr_dpi):
        yield _ocr(job, page.image, page.index, page.source_dpi)


def _ocr(job: ExtractJob, image, index: int, source_dpi: float | None) -> PageLayout:
    dpi = round(min(job.ocr_dpi, source_dpi)) if source_dpi else None
    return ocr_page(image, index, dpi=dpi, cmd=job.tesseract_cmd)


class BuiltinExtractor(Extractor):
    """Pages as words with geometry, field candidates ranked by the trained field ranker, the
    document type from the trained document-type model (``mlops.extraction.trained_models``)."""

    name = "builtin"

    def extract(self, job: ExtractJob) -> Extraction:
        started = time.perf_counter()
        models = load_models(job.model_file)
        layouts = list(read_layouts(job))
        ocr_confidences = [layout.confidence for layout in layouts if layout.source == "ocr"]
        ocr_pages = len(ocr_confidences)
        doc_type, doc_type_confidence = models.doctype.predict("\n".join(layout.text for layout in layouts))
        table = feature_table(layouts, models.lexicon, job.day_first)
        by_index = {layout.index: layout for layout in layouts}
        return Extraction(
            sha256=job.sha256,
            extractor=self.name,
            doc_type=doc_type,
            doc_type_confidence=doc_type_confidence,
            text_source=_text_source(len(layouts) - ocr_pages, ocr_pages),
            pages=len(layouts),
            text_layer_pages=len(layouts) - ocr_pages,
            ocr_pages=ocr_pages,
            ocr_confidence=round(sum(ocr_confidences) / ocr_pages, 4) if ocr_pages else None,
            fields=models.ranker.pick(table, lambda candidate: candidate_text(by_index, candidate)),
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
