"""Extraction with the trained extractor (the model `make test` builds with `make models`), as a
user sees it: text PDFs read from their text layer, scans OCRed by real Tesseract in the sandboxed
worker pool, most labelled fields right on both, a text PDF and the scan of the same document read
alike, and an external extractor over real HTTP.

Accuracy thresholds are modest on purpose: the model is retrained as the extractor improves, and
these tests guard what a user would notice (most fields right), not the current figures.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from pypdf import PdfReader, PdfWriter

from mlops.document_families import FAMILIES, family_document
from mlops.errors import DependencyMissing
from mlops.extraction.evaluation import accuracy_by_group, field_matches, value_matches
from mlops.extraction.extractors import (
    ExtractJob,
    ExtractorUnavailable,
    HttpExtractor,
    extract_document,
    make_extractor,
)
from mlops.extraction.ocr import ensure_tesseract
from mlops.models import DOCUMENT_TYPES, DocumentFormat, Extraction
from mlops.sample_data import generate_corpus
from mlops.workers import WorkerFailure, run_sandboxed

OCR_DPI = 300
TEXT_LAYER_MIN_CHARS = 40
SCANS_TO_OCR = 6
MAX_OCR_PAGES = 8
TEXT_FIELD_ACCURACY = 0.85
SCAN_FIELD_ACCURACY = 0.75
SAME_VALUES = 0.75
# The same document as a text PDF and as a PNG scan: one pair per family below, each a different type.
SCANNED_TWINS = ("label_list", "boxed_form", "table", "letter")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("corpus")
    rows = generate_corpus(14, 3, lambda name, data: (root / name).write_bytes(data), include_bad=False)
    unique = {row["sha256"]: row for row in rows if row["duplicate_of"] is None}
    return root, list(unique.values())


def make_job(sha256: str, label: dict, data: bytes, model_file: str) -> ExtractJob:
    return ExtractJob(
        sha256=sha256,
        format=DocumentFormat(label["format"]),
        data=data,
        ocr_dpi=OCR_DPI,
        text_layer_min_chars=TEXT_LAYER_MIN_CHARS,
        model_file=model_file,
    )


def job_for(root: Path, label: dict, model_file: str) -> ExtractJob:
    return make_job(label["sha256"], label, (root / label["filename"]).read_bytes(), model_file)


def ocr_in_sandbox(jobs: list[ExtractJob], desc: str) -> list[Extraction | WorkerFailure]:
    """The jobs through the real sandboxed worker pool the extract stage uses."""
    results = run_sandboxed(
        extract_document, jobs, total=len(jobs), workers=2, timeout_seconds=180, memory_mb=1536, desc=desc
    )
    return [result for _, result in results]


def score(pairs: list[tuple[dict, Extraction]]) -> tuple[int, int, int]:
    """(labelled fields right, labelled fields, documents typed right) over (label, extraction) pairs."""
    correct = total = doc_types_right = 0
    for label, extraction in pairs:
        matches = field_matches(extraction.row(), label["fields"])
        correct += sum(matches.values())
        total += len(matches)
        doc_types_right += extraction.doc_type == label["doc_type"]
    return correct, total, doc_types_right


@pytest.fixture(scope="module")
def text_pdfs(corpus: tuple[Path, list[dict]], model_file: str) -> list[tuple[dict, Extraction]]:
    """The corpus's text PDFs, plus one text PDF of every layout family (document types in turn)."""
    root, labels = corpus
    pairs = [(label, extract_document(job_for(root, label, model_file)))
             for label in labels if label["has_text_layer"]]  # fmt: skip
    for number, family in enumerate(FAMILIES):
        data, label = family_document(family, DOCUMENT_TYPES[number % len(DOCUMENT_TYPES)], "text_pdf", "text")
        pairs.append((label, extract_document(make_job(label["sha256"], label, data, model_file))))
    return pairs


@pytest.fixture(scope="module")
def ocr_sample(corpus: tuple[Path, list[dict]], model_file: str) -> list[tuple[dict, Extraction | WorkerFailure]]:
    """A few scans of the corpus, one of each format first, OCRed in the real sandboxed worker pool."""
    root, labels = corpus
    scans = sorted((row for row in labels if not row["has_text_layer"]), key=lambda row: row["pages"])
    chosen: list[dict] = []
    for row in scans:
        if row["format"] not in {c["format"] for c in chosen} or row["format"] == "pdf":
            chosen.append(row)
    chosen = chosen[:SCANS_TO_OCR]
    for row in scans:
        if len(chosen) < SCANS_TO_OCR and row not in chosen:
            chosen.append(row)
    while sum(row["pages"] for row in chosen) > MAX_OCR_PAGES:
        chosen.pop()
    assert {row["format"] for row in chosen} >= {"png", "jpeg", "pdf"}, "corpus lacks scan formats"
    results = ocr_in_sandbox([job_for(root, row, model_file) for row in chosen], "ocr sample")
    return list(zip(chosen, results, strict=True))


def test_text_pdfs_are_read_without_ocr_with_most_fields_right(text_pdfs: list[tuple[dict, Extraction]]) -> None:
    assert len(text_pdfs) >= len(FAMILIES) + 2
    for label, extraction in text_pdfs:
        assert extraction.text_source == "text_layer" and extraction.ocr_pages == 0, label["filename"]
        assert extraction.text_layer_pages == extraction.pages == label["pages"], label["filename"]
        assert extraction.ocr_confidence is None
        assert all(0.0 < field.confidence <= 1.0 for field in extraction.fields.values())
    correct, total, doc_types_right = score(text_pdfs)
    print(f"\ntext PDFs: {len(text_pdfs)} documents, {correct}/{total} labelled fields right "
          f"({correct / total:.1%}), doc type right on {doc_types_right}/{len(text_pdfs)}")  # fmt: skip
    assert correct / total >= TEXT_FIELD_ACCURACY
    assert doc_types_right >= 0.8 * len(text_pdfs)


def test_scans_are_ocred_in_the_sandbox_with_most_fields_right(
    ocr_sample: list[tuple[dict, Extraction | WorkerFailure]],
) -> None:
    for label, extraction in ocr_sample:
        assert not isinstance(extraction, WorkerFailure), f"{label['filename']}: {extraction}"
        assert extraction.text_source == "ocr" and extraction.ocr_pages == label["pages"], label["filename"]
        assert extraction.text_layer_pages == 0 and 0.5 < extraction.ocr_confidence <= 1.0
    correct, total, doc_types_right = score(ocr_sample)  # type: ignore[arg-type]
    print(f"\nOCR sample: {len(ocr_sample)} scans, {correct}/{total} labelled fields right "
          f"({correct / total:.1%}), doc type right on {doc_types_right}/{len(ocr_sample)}")  # fmt: skip
    assert correct / total >= SCAN_FIELD_ACCURACY
    assert doc_types_right >= len(ocr_sample) / 2


@pytest.fixture(scope="module")
def scanned_twins(model_file: str) -> list[tuple[dict, Extraction, Extraction | WorkerFailure]]:
    """(label, text PDF extraction, PNG scan extraction) of the same documents."""
    twins = []
    for number, family in enumerate(SCANNED_TWINS):
        doc_type = DOCUMENT_TYPES[number % len(DOCUMENT_TYPES)]
        text_data, text_label = family_document(family, doc_type, "text_pdf", "twin")
        scan_data, scan_label = family_document(family, doc_type, "png", "twin")
        assert scan_label["fields"] == text_label["fields"], "not the same document"
        text = extract_document(make_job(text_label["sha256"], text_label, text_data, model_file))
        twins.append((text_label, text, make_job(scan_label["sha256"], scan_label, scan_data, model_file)))
    scans = ocr_in_sandbox([job for _, _, job in twins], "scanned twins")
    return [(label, text, scan) for (label, text, _), scan in zip(twins, scans, strict=True)]


def test_a_text_pdf_and_its_scan_give_mostly_the_same_values(
    scanned_twins: list[tuple[dict, Extraction, Extraction | WorkerFailure]],
) -> None:
    """One field logic for both sources: what the text layer and OCR see is the same page, so the
    values mostly agree (OCR misreads are what may differ)."""
    same = compared = 0
    for label, text, scan in scanned_twins:
        assert not isinstance(scan, WorkerFailure), f"{label['filename']}: {scan}"
        assert (text.text_source, scan.text_source) == ("text_layer", "ocr")
        for name in label["fields"]:
            text_value, scan_value = text.row()[name], scan.row()[name]
            if text_value is None and scan_value is None:
                same += 1
            elif text_value is not None:
                same += value_matches(name, scan_value, text_value)
            compared += 1
    print(f"\ntext PDF vs scan: {same}/{compared} labelled fields read the same")
    assert same / compared >= SAME_VALUES


def test_a_pdf_with_text_and_scanned_pages_is_mixed(model_file: str) -> None:
    """The first page of a document's text PDF followed by the first page of its scan."""
    text_data, label = family_document("label_list", "billing_statement", "text_pdf", "mixed")
    scan_data, _ = family_document("label_list", "billing_statement", "image_pdf", "mixed")
    writer = PdfWriter()
    writer.add_page(PdfReader(io.BytesIO(text_data)).pages[0])
    writer.add_page(PdfReader(io.BytesIO(scan_data)).pages[0])
    buffer = io.BytesIO()
    writer.write(buffer)
    job = ExtractJob("mixed", DocumentFormat.PDF, buffer.getvalue(), OCR_DPI, TEXT_LAYER_MIN_CHARS,
                     model_file=model_file)  # fmt: skip
    extraction = extract_document(job)
    assert (extraction.text_source, extraction.text_layer_pages, extraction.ocr_pages) == ("mixed", 1, 1)
    assert extraction.ocr_confidence is not None
    assert extraction.doc_type == "billing_statement"
    assert field_matches(extraction.row(), {"account_number": label["fields"]["account_number"]}) == {
        "account_number": True
    }


def test_ensure_tesseract_reports_the_version_or_how_to_install_it(tmp_path: Path) -> None:
    assert ensure_tesseract().startswith("tesseract 5")
    with pytest.raises(DependencyMissing, match="apt-get install tesseract-ocr"):
        ensure_tesseract(str(tmp_path / "no-such-tesseract"))


class ExtractionService:
    """A real HTTP server on 127.0.0.1 that answers with a scripted list of status codes."""

    API_KEY = "test-key-123"

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                service.requests.append((dict(self.headers), body))
                status = service.statuses.pop(0) if service.statuses else 200
                if self.headers["Authorization"] != f"Bearer {service.API_KEY}":
                    status = 401
                payload = service.response(self.headers["X-Document-SHA256"]) if status == 200 else {}
                encoded = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(encoded)))
                self.end_headers()
                self.wfile.write(encoded)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/extract"

    @staticmethod
    def response(sha256: str) -> dict:
        return {
            "doc_type": "billing_statement",
            "doc_type_confidence": 0.97,
            "fields": {
                "principal": {"value": 12345.67, "confidence": 0.99},
                "borrower_name": {"value": "Maria Okafor", "confidence": 0.9},
                "shoe_size": {"value": 44, "confidence": 1.0},
            },
            "pages": 2,
        }


@pytest.fixture
def service() -> Iterator[ExtractionService]:
    service = ExtractionService()
    thread = threading.Thread(target=service.server.serve_forever, daemon=True)
    thread.start()
    yield service
    service.server.shutdown()
    service.server.server_close()


def http_job() -> ExtractJob:
    return ExtractJob("ab" * 32, DocumentFormat.PDF, b"%PDF-1.7 fake", OCR_DPI, TEXT_LAYER_MIN_CHARS)


def test_http_extractor_retries_a_server_error_then_maps_the_answer(service: ExtractionService) -> None:
    service.statuses = [500, 200]
    extractor = make_extractor("http", url=service.url, api_key=service.API_KEY, timeout_seconds=5,
                               backoff_seconds=0.01)  # fmt: skip
    extraction = extractor.extract(http_job())
    assert len(service.requests) == 2
    headers, body = service.requests[-1]
    assert headers["Authorization"] == "Bearer test-key-123"
    assert headers["X-Document-SHA256"] == "ab" * 32
    assert headers["Content-Type"] == "application/pdf" and body == b"%PDF-1.7 fake"
    assert extraction.text_source == "external" and extraction.extractor == "http"
    assert extraction.doc_type == "billing_statement" and extraction.pages == 2
    assert extraction.fields["principal"].value == 12345.67
    assert extraction.fields["borrower_name"].confidence == 0.9
    assert set(extraction.fields) == {"principal", "borrower_name"}


def test_http_extractor_gives_up_after_its_attempts(service: ExtractionService) -> None:
    service.statuses = [503] * 10
    extractor = HttpExtractor(service.url, service.API_KEY, 5, attempts=3, backoff_seconds=0.01)
    with pytest.raises(ExtractorUnavailable, match="failed 3 times.*HTTP 503"):
        extractor.extract(http_job())
    assert len(service.requests) == 3


def test_http_extractor_does_not_retry_a_wrong_key(service: ExtractionService) -> None:
    extractor = HttpExtractor(service.url, "wrong-key", 5, attempts=3, backoff_seconds=0.01)
    with pytest.raises(ExtractorUnavailable, match="HTTP 401.*API key"):
        extractor.extract(http_job())
    assert len(service.requests) == 1


def test_http_extractor_reports_an_unreachable_service() -> None:
    extractor = HttpExtractor("http://127.0.0.1:9/extract", "key", 2, attempts=2, backoff_seconds=0.01)
    with pytest.raises(ExtractorUnavailable, match="failed 2 times"):
        extractor.extract(http_job())


def test_make_extractor_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="unknown extractor 'magic'"):
        make_extractor("magic")


def test_field_matches_tolerates_a_cent_and_case_but_not_a_misread_digit() -> None:
    truth = {"principal": 12345.67, "borrower_name": "Maria D. Okafor", "disbursement_date": "2019-03-14"}
    assert field_matches(
        {"principal": 12345.674, "borrower_name": "MARIA  D. OKAFOR", "disbursement_date": "2019-03-14"},
        truth,
    ) == dict.fromkeys(truth, True)
    assert field_matches(
        {
            "principal": 12345.76,
            "borrower_name": "Maria Okafor",
            "disbursement_date": "2019-03-15",
            "term_months": 12,
        },
        truth,
    ) == dict.fromkeys(truth, False)
    assert field_matches({}, truth) == dict.fromkeys(truth, False)


def test_accuracy_by_group_scores_fields_per_group_and_ignores_bad_inputs() -> None:
    labels = [
        {"sha256": "a", "doc_type": "billing_statement", "fields": {"principal": 100.0, "servicer": "Cobalt"},
         "expected_quarantine_reason": None},
        {"sha256": "b", "doc_type": "idr_application", "fields": {"principal": 200.0},
         "expected_quarantine_reason": None},
        {"sha256": "c", "doc_type": "idr_application", "fields": {"principal": 300.0, "servicer": "Bluestem"},
         "expected_quarantine_reason": None},
        {"sha256": "bad", "doc_type": None, "fields": {"principal": 1.0}, "expected_quarantine_reason": "corrupt"},
    ]  # fmt: skip
    extractions = pd.DataFrame(
        [
            {"sha256": "a", "doc_type": "billing_statement", "text_source": "text_layer", "principal": 100.0,
             "servicer": "cobalt"},
            {"sha256": "b", "doc_type": "idr_application", "text_source": "ocr", "principal": 290.0,
             "servicer": None},
            {"sha256": "c", "doc_type": None, "text_source": "ocr", "principal": 300.0, "servicer": "Bluestem"},
            {"sha256": "bad", "doc_type": None, "text_source": "ocr", "principal": 1.0, "servicer": None},
            {"sha256": "unlabelled", "doc_type": None, "text_source": "ocr", "principal": 5.0, "servicer": None},
        ]
    )  # fmt: skip
    result = accuracy_by_group(extractions, labels, "text_source")
    assert result["documents"] == 3
    assert result["fields"] == {"servicer": 1.0, "principal": pytest.approx(2 / 3)}
    assert result["field_accuracy"] == pytest.approx(4 / 5)
    assert result["doc_type_accuracy"] == pytest.approx(2 / 3)
    ocr = result["by_group"]["ocr"]
    assert ocr["documents"] == 2 and ocr["fields"] == {"servicer": 1.0, "principal": 0.5}
    assert result["by_group"]["text_layer"]["field_accuracy"] == 1.0
    assert accuracy_by_group(extractions, labels, None)["by_group"] == {}
