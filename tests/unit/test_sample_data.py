"""The synthetic corpus is the ground truth every stage is scored against, so its files must really
be what labels.jsonl says they are: same bytes for the same seed, readable documents with the printed
values, and bad input that is bad in the way its label claims."""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
from collections import Counter
from datetime import date, datetime

import pypdfium2
import pytesseract
import pytest
from PIL import Image
from pypdf import PdfReader

from mlops.models import DocumentFormat, QuarantineReason
from mlops.sample_data import DOC_TYPES, FIELD_LABELS, LABELS_FILENAME, generate_corpus, special_counts

COUNT = 12
SEED = 11
MAX_FILE_BYTES = 200_000


def build(count: int = COUNT, seed: int = SEED, **kwargs) -> tuple[dict[str, bytes], list[dict]]:
    files: dict[str, bytes] = {}

    def write(name: str, data: bytes) -> None:
        assert name not in files, f"{name} written twice"
        files[name] = data

    rows = generate_corpus(
        count, seed, write, max_file_bytes=kwargs.pop("max_file_bytes", MAX_FILE_BYTES), **kwargs
    )
    return files, rows


@pytest.fixture(scope="module")
def corpus() -> tuple[dict[str, bytes], list[dict]]:
    return build()


@pytest.fixture(scope="module")
def by_name(corpus) -> dict[str, dict]:
    return {row["filename"]: row for row in corpus[1]}


def good_rows(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["expected_quarantine_reason"] is None]


def kind(row: dict) -> str:
    if row["format"] == "pdf":
        return "text_pdf" if row["has_text_layer"] else "image_pdf"
    return row["format"]


def pdf_text(data: bytes) -> list[str]:
    document = pypdfium2.PdfDocument(data)
    return [document[n].get_textpage().get_text_range() for n in range(len(document))]


def parse_money(text: str) -> float:
    return float(text.replace("$", "").replace(",", ""))


def parse_date(text: str) -> date:
    for pattern in ("%m/%d/%Y", "%B %d, %Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            pass
    raise AssertionError(f"unrecognised date {text!r}")


def test_same_seed_gives_identical_files_and_labels(corpus):
    files, rows = corpus
    again_files, again_rows = build()
    assert again_rows == rows
    assert again_files.keys() == files.keys()
    changed = [name for name in files if again_files[name] != files[name]]
    assert changed == []


def test_another_seed_gives_other_documents(corpus):
    files, rows = corpus
    other_files, other_rows = build(count=5, seed=SEED + 1)
    assert other_files["bad-corrupt.pdf"] != files["bad-corrupt.pdf"]
    first = next(row for row in rows if row["filename"].startswith("doc-0001"))
    other_first = next(row for row in other_rows if row["filename"].startswith("doc-0001"))
    assert first["fields"] != other_first["fields"]
    assert first["sha256"] != other_first["sha256"]


def test_labels_file_describes_every_written_file(corpus):
    files, rows = corpus
    labels = [json.loads(line) for line in files[LABELS_FILENAME].decode().splitlines()]
    assert labels == rows
    assert [row["filename"] for row in rows] == sorted(row["filename"] for row in rows)
    assert {row["filename"] for row in rows} == set(files) - {LABELS_FILENAME}
    for row in rows:
        data = files[row["filename"]]
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["size_bytes"] == len(data)
    assert len(good_rows(rows)) == COUNT


def test_every_format_and_document_type_is_represented(corpus):
    good = good_rows(corpus[1])
    kinds = Counter(kind(row) for row in good)
    assert set(kinds) == {"text_pdf", "image_pdf", "png", "jpeg", "tiff"}
    assert min(kinds.values()) >= 2, kinds
    types = Counter(row["doc_type"] for row in good)
    assert set(types) == set(DOC_TYPES)
    assert max(types.values()) <= 4, types


def test_each_bad_input_carries_its_quarantine_reason(corpus):
    reasons = Counter(row["expected_quarantine_reason"] for row in corpus[1])
    assert reasons.pop(None) == COUNT
    assert reasons == {
        QuarantineReason.CORRUPT.value: 3,
        QuarantineReason.EMPTY_FILE.value: 1,
        QuarantineReason.EXTENSION_MISMATCH.value: 1,
        QuarantineReason.ENCRYPTED.value: 1,
        QuarantineReason.TOO_LARGE.value: 1,
        QuarantineReason.DECOMPRESSION_BOMB.value: 1,
        QuarantineReason.UNSUPPORTED_FORMAT.value: 1,
    }
    assert all(row["format"] in {f.value for f in DocumentFormat} | {None} for row in corpus[1])


def test_bad_inputs_are_bad_the_way_their_labels_say(corpus, by_name):
    files = corpus[0]
    for name in ("bad-corrupt.pdf", "bad-truncated.pdf"):
        assert files[name].startswith(b"%PDF-")
        with pytest.raises(pypdfium2.PdfiumError):
            pypdfium2.PdfDocument(files[name])
    with pytest.raises(OSError, match="truncated"):
        Image.open(io.BytesIO(files["bad-truncated.png"])).load()
    assert files["bad-empty.pdf"] == b""
    assert files["bad-extension-mismatch.pdf"].startswith(b"\x89PNG\r\n\x1a\n")
    assert Image.open(io.BytesIO(files["bad-extension-mismatch.pdf"])).format == "PNG"
    assert not files["bad-notes.txt"].startswith((b"%PDF", b"\x89PNG", b"\xff\xd8", b"II*\x00", b"MM\x00*"))

    encrypted = PdfReader(io.BytesIO(files["bad-encrypted.pdf"]))
    assert encrypted.is_encrypted
    with pytest.raises(pypdfium2.PdfiumError):
        pypdfium2.PdfDocument(files["bad-encrypted.pdf"])

    oversized = files["bad-too-large.pdf"]
    assert len(oversized) == MAX_FILE_BYTES + 1
    assert len(pypdfium2.PdfDocument(oversized)) == by_name["bad-too-large.pdf"]["pages"]
    assert len(PdfReader(io.BytesIO(oversized)).pages) == by_name["bad-too-large.pdf"]["pages"]


def test_decompression_bomb_declares_a_huge_image_in_a_small_file(corpus, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 90_000_000)
    bomb = corpus[0]["bad-decompression-bomb.png"]
    width, height = struct.unpack(">II", bomb[16:24])
    assert width * height > 90_000_000
    assert len(bomb) < 100_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb))


def test_oversized_file_is_one_byte_over_the_default_limit():
    files, rows = build(count=0, max_file_bytes=50 * 1024 * 1024)
    assert len(files["bad-too-large.pdf"]) == 50 * 1024 * 1024 + 1
    assert len(PdfReader(io.BytesIO(files["bad-too-large.pdf"])).pages) == 2
    assert not [row for row in rows if row["expected_quarantine_reason"] is None]


def test_without_bad_input_only_documents_and_labels_are_written():
    files, rows = build(count=0, include_bad=False)
    assert rows == [] and files == {LABELS_FILENAME: b""}


def test_text_pdfs_carry_their_field_values_in_the_text_layer(corpus):
    files, rows = corpus
    text_pdfs = [row for row in good_rows(rows) if kind(row) == "text_pdf"]
    assert text_pdfs
    for row in text_pdfs:
        pages = pdf_text(files[row["filename"]])
        assert len(pages) == row["pages"]
        lines = {line.strip() for line in pages[0].splitlines()}
        for name, printed in row["printed"].items():
            assert f"{FIELD_LABELS[name]}: {printed}" in lines, (row["filename"], name)


def test_scans_have_no_text_layer_and_the_labelled_page_count_and_size(corpus):
    files, rows = corpus
    scans = [row for row in good_rows(rows) if kind(row) != "text_pdf"]
    for row in scans:
        data = files[row["filename"]]
        assert 150 <= row["dpi"] <= 300 and row["scan_quality"] is not None
        if row["format"] == "pdf":
            pages = pdf_text(data)
            assert len(pages) == row["pages"]
            assert all(not text.strip() for text in pages), row["filename"]
            width, height = pypdfium2.PdfDocument(data)[0].get_size()
            assert (round(width), round(height)) == (612, 792)
        else:
            image = Image.open(io.BytesIO(data))
            assert getattr(image, "n_frames", 1) == row["pages"]
            assert image.size == (round(8.5 * row["dpi"]), round(11 * row["dpi"]))
            assert round(image.info["dpi"][0]) == row["dpi"]


def test_tiffs_are_multi_page(corpus):
    files, rows = corpus
    tiffs = [row for row in good_rows(rows) if row["format"] == "tiff"]
    assert tiffs
    for row in tiffs:
        image = Image.open(io.BytesIO(files[row["filename"]]))
        assert image.n_frames == row["pages"] >= 2
        image.seek(1)
        image.load()


def test_printed_values_follow_the_documented_formats_and_match_the_fields(corpus):
    patterns = {
        "account_number": r"\d{4}-\d{4}-\d{2}",
        "principal": r"-?\$\d{1,3}(,\d{3})*\.\d{2}",
        "monthly_payment": r"\$\d{1,3}(,\d{3})*\.\d{2}",
        "interest_rate": r"\d{1,2}\.\d{2}%",
        "term_months": r"\d{2,3} months",
    }
    for row in good_rows(corpus[1]):
        assert row["printed"].keys() == row["fields"].keys()
        assert {"borrower_name", "account_number", "servicer"} <= row["fields"].keys()
        for name, printed in row["printed"].items():
            if name in patterns:
                assert re.fullmatch(patterns[name], printed), (name, printed)
        fields, printed = row["fields"], row["printed"]
        assert fields["servicer"] == row["servicer"] == printed["servicer"]
        if "principal" in fields:
            assert parse_money(printed["principal"].replace("-$", "$-")) == fields["principal"]
        if "interest_rate" in fields:
            assert float(printed["interest_rate"].rstrip("%")) == fields["interest_rate"]
        if "disbursement_date" in fields:
            assert parse_date(printed["disbursement_date"]).isoformat() == fields["disbursement_date"]
        if "term_months" in fields:
            assert int(printed["term_months"].split()[0]) == fields["term_months"]


def test_anomalous_documents_print_implausible_values(corpus):
    files, rows = corpus
    anomalous = [row for row in good_rows(rows) if row["anomalies"] and row["duplicate_of"] is None]
    assert {name for row in anomalous for name in row["anomalies"]} == {
        "interest_rate",
        "principal",
        "disbursement_date",
    }
    for row in anomalous:
        printed = row["printed"]
        for name in row["anomalies"]:
            if name == "interest_rate":
                assert float(printed[name].rstrip("%")) >= 30
            elif name == "principal":
                assert printed[name].startswith("-$")
            else:
                assert parse_date(printed[name]).year >= date.today().year + 5
        if kind(row) == "text_pdf":
            assert all(printed[name] in pdf_text(files[row["filename"]])[0] for name in row["anomalies"])
    ordinary = [row for row in good_rows(rows) if not row["anomalies"]]
    for row in ordinary:
        assert row["fields"].get("interest_rate", 5.0) < 12
        assert row["fields"].get("principal", 1.0) > 0
        assert row["fields"].get("disbursement_date", "2020-01-01") <= date.today().isoformat()


def test_exact_duplicates_repeat_an_earlier_document_under_another_name(corpus, by_name):
    files, rows = corpus
    duplicates = [row for row in rows if row["duplicate_of"]]
    assert duplicates
    for row in duplicates:
        original = by_name[row["duplicate_of"]]
        assert original["filename"] < row["filename"]
        assert files[row["filename"]] == files[original["filename"]]
        assert row["expected_quarantine_reason"] is None
        assert row["fields"] == original["fields"]


def test_rescans_reprint_their_original_at_another_scan_quality(corpus, by_name):
    """Whether preprocessing finds them is tested in test_preprocess_metrics."""
    _, rows = corpus
    rescans = [row for row in good_rows(rows) if row["near_duplicate_of"]]
    assert rescans
    for row in rescans:
        original = by_name[row["near_duplicate_of"]]
        assert original["filename"] < row["filename"]
        assert original["fields"] == row["fields"] and row["sha256"] != original["sha256"]
        assert row["dpi"] is not None and (row["dpi"], row["scan_quality"]) != (
            original["dpi"],
            original["scan_quality"],
        )


def test_tesseract_reads_the_account_number_on_the_noisiest_scan(corpus, monkeypatch):
    files, rows = corpus
    scans = [row for row in good_rows(rows) if row["scan_quality"]]
    noisiest = max(scans, key=lambda row: (row["scan_quality"]["noise"], row["filename"]))
    data = files[noisiest["filename"]]
    if noisiest["format"] == "pdf":
        page = pypdfium2.PdfDocument(data)[0].render(scale=noisiest["dpi"] / 72).to_pil()
    else:
        page = Image.open(io.BytesIO(data))
    monkeypatch.setenv("OMP_THREAD_LIMIT", "1")
    text = pytesseract.image_to_string(page)
    compact = re.sub(r"\s+", "", text)
    assert noisiest["printed"]["account_number"] in compact
    assert "Account Number" in text


def test_special_documents_scale_with_the_corpus():
    assert special_counts(10) == (1, 1, 3)
    duplicates, near, anomalous = special_counts(200)
    assert duplicates > 1 and near > 1 and anomalous > 3
    assert duplicates + near + anomalous < 200 // 4
    assert special_counts(0) == (0, 0, 0)
