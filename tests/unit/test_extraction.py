"""Extraction on a real synthetic corpus: text layers read exactly, scans OCRed by real Tesseract,
fields normalised, document types recognised, an external extractor over real HTTP."""

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

from mlops.errors import DependencyMissing
from mlops.extraction import (
    ExtractJob,
    ExtractorUnavailable,
    HttpExtractor,
    classify,
    ensure_tesseract,
    extract_document,
    make_extractor,
    parse_fields,
)
from mlops.extraction.evaluation import accuracy_by_group, field_matches
from mlops.models import DocumentFormat
from mlops.sample_data import FIELD_LABELS, generate_corpus
from mlops.workers import WorkerFailure, run_sandboxed

OCR_DPI = 300
TEXT_LAYER_MIN_CHARS = 40
SCANS_TO_OCR = 5
MAX_OCR_PAGES = 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("corpus")
    rows = generate_corpus(14, 3, lambda name, data: (root / name).write_bytes(data), include_bad=False)
    unique = {row["sha256"]: row for row in rows if row["duplicate_of"] is None}
    return root, list(unique.values())


def job_for(root: Path, label: dict) -> ExtractJob:
    return ExtractJob(
        sha256=label["sha256"],
        format=DocumentFormat(label["format"]),
        data=(root / label["filename"]).read_bytes(),
        ocr_dpi=OCR_DPI,
        text_layer_min_chars=TEXT_LAYER_MIN_CHARS,
    )


@pytest.fixture(scope="module")
def ocr_sample(corpus: tuple[Path, list[dict]]) -> list[tuple[dict, object]]:
    """A few scans, one of each format first, OCRed in the real sandboxed worker pool."""
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
    results = run_sandboxed(
        extract_document,
        [job_for(root, row) for row in chosen],
        total=len(chosen),
        workers=2,
        timeout_seconds=120,
        memory_mb=1536,
        desc="ocr sample",
    )
    return [(row, result) for row, (_, result) in zip(chosen, results, strict=True)]


def test_text_pdfs_yield_every_labelled_field_exactly_without_ocr(corpus: tuple[Path, list[dict]]) -> None:
    root, labels = corpus
    text_pdfs = [row for row in labels if row["has_text_layer"]]
    assert len(text_pdfs) >= 2
    for label in text_pdfs:
        extraction = extract_document(job_for(root, label))
        assert extraction.text_source == "text_layer" and extraction.ocr_pages == 0
        assert extraction.text_layer_pages == extraction.pages == label["pages"]
        values = {name: field.value for name, field in extraction.fields.items()}
        assert values == label["fields"], label["filename"]
        assert all(field.confidence == 1.0 for field in extraction.fields.values())
        assert extraction.doc_type == label["doc_type"] and extraction.doc_type_confidence > 0.9


def test_scans_are_ocred_with_high_field_accuracy(ocr_sample: list[tuple[dict, object]]) -> None:
    correct = total = doc_types_right = 0
    for label, extraction in ocr_sample:
        assert not isinstance(extraction, WorkerFailure), f"{label['filename']}: {extraction}"
        assert extraction.text_source == "ocr" and extraction.ocr_pages == label["pages"]
        assert extraction.text_layer_pages == 0 and 0.5 < extraction.ocr_confidence <= 1.0
        matches = field_matches(extraction.row(), label["fields"])
        correct += sum(matches.values())
        total += len(matches)
        doc_types_right += extraction.doc_type == label["doc_type"]
    accuracy = correct / total
    print(f"\nOCR sample: {len(ocr_sample)} scans, {correct}/{total} labelled fields correct ({accuracy:.1%}), "
          f"doc type right on {doc_types_right}/{len(ocr_sample)}")  # fmt: skip
    assert accuracy >= 0.8
    assert doc_types_right >= len(ocr_sample) - 1


def test_ocr_confidence_lowers_field_confidence(ocr_sample: list[tuple[dict, object]]) -> None:
    _, extraction = ocr_sample[0]
    assert extraction.fields
    assert all(field.confidence <= extraction.ocr_confidence + 1e-9 for field in extraction.fields.values())


def test_a_pdf_with_text_and_scanned_pages_is_mixed(corpus: tuple[Path, list[dict]]) -> None:
    root, labels = corpus
    text_pdf = next(row for row in labels if row["has_text_layer"])
    scanned_pdf = min(
        (row for row in labels if row["format"] == "pdf" and not row["has_text_layer"]),
        key=lambda row: row["dpi"],
    )
    writer = PdfWriter()
    writer.add_page(PdfReader(root / text_pdf["filename"]).pages[0])
    writer.add_page(PdfReader(root / scanned_pdf["filename"]).pages[0])
    buffer = io.BytesIO()
    writer.write(buffer)
    job = ExtractJob("mixed", DocumentFormat.PDF, buffer.getvalue(), OCR_DPI, TEXT_LAYER_MIN_CHARS)
    extraction = extract_document(job)
    assert (extraction.text_source, extraction.text_layer_pages, extraction.ocr_pages) == ("mixed", 1, 1)
    assert extraction.ocr_confidence is not None
    assert extraction.fields["account_number"].value == text_pdf["fields"]["account_number"]


def test_every_printed_format_parses_back_to_its_label(corpus: tuple[Path, list[dict]]) -> None:
    """The printed strings of the whole corpus (all date styles, anomalies included) round-trip."""
    _, labels = corpus
    for label in labels:
        text = "\n".join(f"{FIELD_LABELS[name]}: {value}" for name, value in label["printed"].items())
        parsed = parse_fields(text, None)
        assert {name: field.value for name, field in parsed.items()} == label["fields"], label["printed"]


@pytest.mark.parametrize(
    ("printed", "iso"),
    [
        ("03/14/2019", "2019-03-14"),
        ("March 14, 2019", "2019-03-14"),
        ("2019-03-14", "2019-03-14"),
        ("Mar. 4, 2019", "2019-03-04"),
        ("14 March 2019", "2019-03-14"),
        ("Novernber 5, 2O21", "2021-11-05"),
        ("1l/05/2021", "2021-11-05"),
    ],
)
def test_disbursement_date_formats(printed: str, iso: str) -> None:
    field = parse_fields(f"Disbursement Date: {printed}", None)["disbursement_date"]
    assert field.value == iso


def test_impossible_date_is_not_reported() -> None:
    assert "disbursement_date" not in parse_fields("Disbursement Date: 02/30/2019", None)


def test_ocr_damaged_numbers_are_repaired_with_lower_confidence() -> None:
    clean = parse_fields(
        "Principal Balance: $12,340.50\nInterest Rate: 6.80%\nRepayment Term: 120 months", 0.9
    )
    damaged = parse_fields(
        "PRINCIPAL  BALANCE : S12,34O.5O\nlnterest Rate; 6.8O %\nRepayment Term: l2O months\n"
        "Account Number: 7352 7378 1O\nMonthly Payment: $1.212,07",
        0.9,
    )
    assert damaged["principal"].value == clean["principal"].value == 12340.50
    assert damaged["interest_rate"].value == clean["interest_rate"].value == 6.8
    assert damaged["term_months"].value == clean["term_months"].value == 120
    assert damaged["account_number"].value == "7352-7378-10"
    assert damaged["monthly_payment"].value == 1212.07
    assert clean["principal"].confidence == pytest.approx(0.9)
    for name in ("principal", "interest_rate", "term_months"):
        assert damaged[name].confidence < clean[name].confidence


def test_anomalous_values_come_through_unchanged() -> None:
    parsed = parse_fields(
        "Principal Balance: -$8,067.95\nInterest Rate: 48.00%\nDisbursement Date: 11/01/2049", None
    )
    assert parsed["principal"].value == -8067.95
    assert parsed["interest_rate"].value == 48.0
    assert parsed["disbursement_date"].value == "2049-11-01"


def test_labels_are_not_confused_with_prose_or_similar_labels() -> None:
    text = (
        "Annual Percentage Rate (APR): 6.97%\n"
        "monthly payments during the forbearance period shown above.\n"
        "servicer if the student withdraws, graduates or drops below half-time\n"
        "Master Promissory Note - Terms and Conditions (continued)\n"
        "principal amount shown above, together with interest"
    )
    assert parse_fields(text, None) == {}


def test_names_and_servicer_keep_their_printed_text() -> None:
    parsed = parse_fields(
        "Borrower  Name:   Maria D.  Lindqvist \n| Servicer: Quillfeather Student Finance", None
    )
    assert parsed["borrower_name"].value == "Maria D. Lindqvist"
    assert parsed["servicer"].value == "Quillfeather Student Finance"


def test_classifier_is_robust_to_case_and_spacing_and_admits_ignorance() -> None:
    doc_type, confidence = classify("MONTHLY   BILLING\nStatement\nPayment Due Date: 2024-10-14")
    assert doc_type == "billing_statement" and confidence > 0.9
    assert classify("Dear customer, thank you for your letter.") == (None, 0.0)
    weak_type, weak_confidence = classify("Family size: 3")
    assert weak_type == "idr_application" and weak_confidence < 0.5


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
