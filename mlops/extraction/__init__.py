"""Turning document bytes into structured loan data: pages as words with geometry (text layer or
OCR), field candidates ranked by a trained model, and a trained document-type classifier."""

from mlops.extraction.extractors import (
    BuiltinExtractor,
    ExtractJob,
    Extractor,
    ExtractorUnavailable,
    HttpExtractor,
    extract_document,
    make_extractor,
)
from mlops.extraction.ocr import ensure_tesseract, ocr_page

__all__ = [
    "BuiltinExtractor",
    "ExtractJob",
    "Extractor",
    "ExtractorUnavailable",
    "HttpExtractor",
    "ensure_tesseract",
    "extract_document",
    "make_extractor",
    "ocr_page",
]
