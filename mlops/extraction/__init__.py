"""Turning document bytes into structured loan data: text layer, OCR, field parsing, doc type."""

from mlops.extraction.classifier import classify
from mlops.extraction.extractors import (
    BuiltinExtractor,
    ExtractJob,
    Extractor,
    ExtractorUnavailable,
    HttpExtractor,
    extract_document,
    make_extractor,
)
from mlops.extraction.fields import parse_fields
from mlops.extraction.ocr import ensure_tesseract, ocr_page

__all__ = [
    "BuiltinExtractor",
    "ExtractJob",
    "Extractor",
    "ExtractorUnavailable",
    "HttpExtractor",
    "classify",
    "ensure_tesseract",
    "extract_document",
    "make_extractor",
    "ocr_page",
    "parse_fields",
]
