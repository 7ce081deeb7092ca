"""The synthetic corpus is the ground truth every stage is scored against, so its files must really
be what labels.jsonl says they are: same bytes for the same seed, readable documents with the printed
values (once each, beside distractors of the same type), many layouts, and bad input that is bad in
the way its label claims."""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import struct
from collections import Counter
from datetime import date, datetime

import pypdfium2
import pytest
from PIL import Image
from pypdf import PdfReader

from mlops.document_families import (
    FAMILIES,
    FONTS,
    KINDS,
    LETTER_SENTENCES,
    SERVICERS,
    TITLES,
    WORDINGS,
    family_document,
    make_document,
    non_loan_document,
    render,
)
from mlops.extraction.ocr import ocr_page
from mlops.models import FIELD_NAMES, REQUIRED_FIELDS, UNKNOWN_DOCUMENT_TYPE, DocumentFormat, QuarantineReason
from mlops.sample_data import DOC_TYPES, FIELD_LABELS, LABELS_FILENAME, generate_corpus, special_counts
from mlops.sample_rendering import (
    GRADES,
    LOW_CONTRAST_INK,
    LOW_CONTRAST_PAPER,
    NOISE_PER_CONTRAST,
    PAGE_SIZES,
    POOR_JPEG_QUALITY,
    ScanQuality,
)

COUNT = 12
SEED = 11
MAX_FILE_BYTES = 200_000
MONEY = re.compile(r"USD -?[\d,]+\.\d{2}|-?\$[\d,]+\.\d{2}|-?[\d,]+\.\d{2} USD")
MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?"
DATE = re.compile(
    rf"\b\d{{2}}/\d{{2}}/\d{{4}}\b|\b\d{{2}}-\d{{2}}-\d{{2}}\b|{MONTH} \d{{1,2}}, \d{{4}}"
    rf"|\b\d{{1,2}} {MONTH} \d{{4}}|\b\d{{4}}-\d{{2}}-\d{{2}}\b"
)
RATE = re.compile(r"\b\d+(?:\.\d+)?(?: ?%| percent)")
LETTER_WORDINGS = {"prose", "address block", "signature block"}


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


@pytest.fixture(scope="module")
def family_sweep() -> list[tuple[bytes, dict]]:
    """One text PDF of every family and document type."""
    return [
        family_document(family, doc_type, "text_pdf", f"sweep-{n}")
        for n, (family, doc_type) in enumerate((f, t) for f in FAMILIES for t in DOC_TYPES)
    ]


def good_rows(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["expected_quarantine_reason"] is None]


def kind(row: dict) -> str:
    if row["format"] == "pdf":
        return "text_pdf" if row["has_text_layer"] else "image_pdf"
    return row["format"]


def pdf_text(data: bytes) -> list[str]:
    document = pypdfium2.PdfDocument(data)
    return [" ".join(document[n].get_textpage().get_text_range().split()) for n in range(len(document))]


def parse_money(text: str) -> float:
    assert MONEY.fullmatch(text), text
    return float(text.replace("USD", "").replace("$", "").replace(",", ""))


def parse_rate(text: str) -> float:
    assert RATE.fullmatch(text), text
    return float(text.replace("percent", "").replace("%", ""))


def parse_term(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+) (months|years|mo\.|monthly payments)", text).groups()
    return int(number) * (12 if unit == "years" else 1)


def parse_date(text: str) -> date:
    assert DATE.fullmatch(text), text
    cleaned = re.sub(r"\bSept\b", "Sep", text.replace(".", ""))
    for pattern in ("%m/%d/%Y", "%m-%d-%y", "%B %d, %Y", "%b %d, %Y", "%d %b %Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(cleaned, pattern).date()
        except ValueError:
            pass
    raise AssertionError(f"unrecognised date {text!r}")


def assert_printed_matches_truth(row: dict) -> None:
    fields, printed = row["fields"], row["printed"]
    assert printed.keys() == fields.keys()
    assert set(fields) <= set(REQUIRED_FIELDS[row["doc_type"]])
    assert {"borrower_name", "account_number", "servicer"} <= fields.keys()
    assert fields["servicer"] == row["servicer"] in SERVICERS
    assert printed["servicer"] in (
        fields["servicer"],
        fields["servicer"].upper(),
        *SERVICERS[fields["servicer"]],
    )
    assert printed["borrower_name"].casefold() == fields["borrower_name"].casefold()
    assert printed["account_number"] == fields["account_number"]
    assert re.fullmatch(
        r"[A-Z]{2}-\d{9}|\d{4}-\d{4}-\d{2}|\d{10}|[A-Z]-\d{4}-\d{4}", fields["account_number"]
    )
    for name in ("principal", "monthly_payment"):
        if name in fields:
            assert isinstance(fields[name], float) and parse_money(printed[name]) == fields[name]
    if "interest_rate" in fields:
        assert isinstance(fields["interest_rate"], float)
        assert parse_rate(printed["interest_rate"]) == fields["interest_rate"]
    if "term_months" in fields:
        assert (
            isinstance(fields["term_months"], int)
            and parse_term(printed["term_months"]) == fields["term_months"]
        )
    if "disbursement_date" in fields:
        assert parse_date(printed["disbursement_date"]).isoformat() == fields["disbursement_date"]


def test_same_seed_gives_identical_files_and_labels(corpus):
    files, rows = corpus
    again_files, again_rows = build()
    assert again_rows == rows
    assert again_files.keys() == files.keys()
    changed = [name for name in files if again_files[name] != files[name]]
    assert changed == []


def test_another_seed_gives_other_documents(corpus):
    files, rows = corpus
    other_files, other_rows = build(count=1, seed=SEED + 1)
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
    assert len({frozenset(row) for row in rows}) == 1, "every row has the same keys"
    for row in rows:
        data = files[row["filename"]]
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["size_bytes"] == len(data)
    assert len(good_rows(rows)) == COUNT


def test_every_format_family_and_document_type_is_represented(corpus):
    good = good_rows(corpus[1])
    kinds = Counter(kind(row) for row in good)
    assert set(kinds) == set(KINDS)
    assert min(kinds.values()) >= 2, kinds
    assert all(row["kind"] == kind(row) for row in good)
    types = Counter(row["doc_type"] for row in good)
    assert set(types) == set(DOC_TYPES)
    assert max(types.values()) <= 4, types
    originals = Counter(
        row["family"] for row in good if not row["duplicate_of"] and not row["near_duplicate_of"]
    )
    assert set(originals) == set(FAMILIES)
    assert max(originals.values()) - min(originals.values()) <= 1, originals


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


def test_classic_text_pdfs_keep_their_label_value_lines(corpus):
    files, rows = corpus
    classic = [row for row in good_rows(rows) if row["family"] == "classic"]
    classic += [row for _, row in [family_document("classic", t, "text_pdf", 1) for t in DOC_TYPES]]
    for row in classic:
        data = files.get(row["filename"]) or family_document("classic", row["doc_type"], "text_pdf", 1)[0]
        if kind(row) != "text_pdf":
            continue
        lines = {
            line.strip()
            for line in pypdfium2.PdfDocument(data)[0].get_textpage().get_text_range().splitlines()
        }
        for name, printed in row["printed"].items():
            assert f"{FIELD_LABELS[name]}: {printed}" in lines, (row["filename"], name)
        assert row["wordings"] == {name: FIELD_LABELS[name] for name in row["fields"]}
        assert (row["font"], row["page_size"], row["title"]) == (
            "Helvetica",
            "letter",
            TITLES[row["doc_type"]][0],
        )


def test_every_printed_value_is_in_the_text_layer_exactly_once(corpus, family_sweep):
    files, rows = corpus
    documents = [(files[row["filename"]], row) for row in good_rows(rows) if kind(row) == "text_pdf"]
    documents += family_sweep
    for data, row in documents:
        pages = pdf_text(data)
        assert len(pages) == row["pages"]
        text = "\n".join(pages).casefold()
        for name, printed in row["printed"].items():
            found = text.count(" ".join(printed.split()).casefold())
            if row["family"] == "classic":
                assert found >= 1, (row["family"], name, printed)
            else:
                assert found == 1, (row["family"], row["doc_type"], name, printed)
            assert printed.casefold() in pages[row["field_pages"][name]].casefold()


def test_printed_values_follow_the_documented_formats_and_match_the_fields(corpus, family_sweep):
    rows = [row for row in good_rows(corpus[1])] + [row for _, row in family_sweep]
    for row in rows:
        assert_printed_matches_truth(row)


def test_distractors_of_the_same_type_sit_beside_the_truth_and_differ_from_it(family_sweep):
    """A money, date or rate field's value occurs once among all values of its type on the page,
    and other values of that type are present (due dates, APRs, fees, amounts due...)."""
    for data, row in family_sweep:
        if row["family"] == "classic":
            continue
        text = "\n".join(pdf_text(data))
        amounts = [parse_money(m) for m in MONEY.findall(text)]
        dates = [parse_date(m).isoformat() for m in DATE.findall(text)]
        rates = [parse_rate(m) for m in RATE.findall(text)]
        fields = row["fields"]
        context = (row["family"], row["doc_type"])
        assert len(amounts) > sum(name in fields for name in ("principal", "monthly_payment")), context
        assert len(dates) > ("disbursement_date" in fields), context
        for name in ("principal", "monthly_payment"):
            if name in fields:
                assert amounts.count(fields[name]) == 1, (context, name)
        if "disbursement_date" in fields:
            assert dates.count(fields["disbursement_date"]) == 1, context
        if "interest_rate" in fields:
            assert rates.count(fields["interest_rate"]) == 1 and len(rates) >= 2, context
        pages = pdf_text(data)
        assert all(DATE.search(page) for page in pages), f"a page of {context} has no date distractor"


def test_layout_facts_are_labelled(family_sweep):
    for data, row in family_sweep:
        width, height = PAGE_SIZES[row["page_size"]]
        document = pypdfium2.PdfDocument(data)
        assert all(
            (round(page.get_width()), round(page.get_height())) == (round(width), round(height))
            for page in document
        )
        assert row["font"] in FONTS and row["title"] in TITLES[row["doc_type"]]
        for name, (page, x0, top, x1, bottom) in row["field_boxes"].items():
            assert page == row["field_pages"][name] and 0 < x0 < x1 < width and 0 < top < bottom < height
            text = (
                document[page]
                .get_textpage()
                .get_text_bounded(x0 + 1, height - bottom - 1, x1 - 1, height - top + 1)
            )
            assert " ".join(text.split()).casefold() == row["printed"][name].casefold(), (row["family"], name)
        for name, wording in row["wordings"].items():
            unlabelled = row["family"] == "letter" or (name, wording) in (("borrower_name", "address block"),
                                                                         (name, "prose"))  # fmt: skip
            assert wording in WORDINGS[name] or (unlabelled and wording in LETTER_WORDINGS)
    multi = [row for _, row in family_sweep if row["family"] == "multi_section"]
    assert all(row["pages"] >= 2 and max(row["field_pages"].values()) >= 1 for row in multi)
    assert all(min(row["field_pages"].values()) == 0 for row in multi)


def test_wordings_titles_fonts_and_paper_vary(family_sweep):
    assert set(WORDINGS) == set(FIELD_NAMES) and all(len(set(w)) >= 10 for w in WORDINGS.values())
    assert set(TITLES) == set(DOC_TYPES) and all(len(set(t)) >= 4 for t in TITLES.values())
    assert set(FONTS) >= {"Helvetica", "Times", "Courier"}
    rows = [row for _, row in family_sweep]
    assert {row["page_size"] for row in rows} == {"letter", "a4"}
    assert {row["font"] for row in rows} == set(FONTS)
    assert len({row["title"] for row in rows}) > 2 * len(DOC_TYPES)
    assert len({wording for row in rows for wording in row["wordings"].values()}) > 40
    separators = {row["layout"].get("separator") for row in rows if row["family"] == "label_list"}
    assert len(separators) >= 2


def test_restrictions_choose_the_wordings_titles_and_fonts(family_sweep):
    wordings = {name: options[-2:] for name, options in WORDINGS.items()}
    titles = {doc_type: options[-1:] for doc_type, options in TITLES.items()}
    for family in FAMILIES[1:]:
        data, row = family_document(
            family, "disclosure_statement", "text_pdf", 3, wordings=wordings, titles=titles, fonts=["Courier"]
        )
        assert row["title"] == TITLES["disclosure_statement"][-1] and row["font"] == "Courier"
        assert b"/BaseFont /Courier" in data and b"/BaseFont /Helvetica" not in data
        for name, wording in row["wordings"].items():
            assert wording in wordings[name] or wording in LETTER_WORDINGS, (family, name, wording)


def test_form_families_state_some_fields_in_sentences_from_the_allowed_templates():
    allowed = [template for fields, template, _ in LETTER_SENTENCES if fields == ("interest_rate",)][:1]
    allowed += [template for fields, template, _ in LETTER_SENTENCES if fields[0] != "interest_rate"]
    forbidden = [template for fields, template, _ in LETTER_SENTENCES if fields == ("interest_rate",)][1:]
    in_prose = []
    for number in range(40):
        data, row = family_document("label_list", "disclosure_statement", "text_pdf", number, sentences=allowed)
        text = " ".join(pdf_text(data))
        for name in [name for name, wording in row["wordings"].items() if wording == "prose"]:
            in_prose.append(name)
            assert row["printed"][name] in text and name not in row["printed_labels"], (number, name)
        assert not any(template.split("{")[0] in text for template in forbidden if template.split("{")[0]), number
    assert 5 <= len(in_prose) <= 30 and "interest_rate" in in_prose


def test_some_forms_print_their_date_alone_under_the_header():
    dated = 0
    for number in range(30):
        data, row = family_document("two_column", "billing_statement", "text_pdf", number)
        lines = [line.strip() for line in pypdfium2.PdfDocument(data)[0].get_textpage().get_text_range().splitlines()]
        alone = [line for line in lines[:6] if DATE.fullmatch(line)]
        dated += bool(alone)
        assert not set(alone) & set(row["printed"].values()), number
    assert 3 <= dated <= 20


def test_family_documents_are_deterministic_and_the_same_across_kinds():
    first = family_document("boxed_form", "billing_statement", "jpeg", "det")
    assert family_document("boxed_form", "billing_statement", "jpeg", "det") == first
    text = family_document("boxed_form", "billing_statement", "text_pdf", "det")
    assert text[1]["fields"] == first[1]["fields"] and text[1]["printed"] == first[1]["printed"]
    assert (
        family_document("boxed_form", "billing_statement", "text_pdf", "other")[1]["fields"]
        != text[1]["fields"]
    )


def test_non_loan_forms_are_unknown_documents_without_fields():
    rows = []
    for number in range(12):
        data, row = non_loan_document("text_pdf", number)
        text = "\n".join(pdf_text(data))
        assert row["doc_type"] == UNKNOWN_DOCUMENT_TYPE and row["fields"] == {} and row["printed"] == {}
        assert row["family"] == "non_loan" and row["servicer"] is None
        assert MONEY.search(text) or DATE.search(text)
        assert row["title"] in text or row["title"].upper() in text
        assert all(row["title"] not in titles for titles in TITLES.values())
        rows.append(row)
    assert len({row["layout"]["form"] for row in rows}) >= 3
    data, row = non_loan_document("png", 1)
    assert (
        Image.open(io.BytesIO(data)).format == "PNG"
        and row["dpi"]
        and row["doc_type"] == UNKNOWN_DOCUMENT_TYPE
    )


def test_scans_have_no_text_layer_and_the_labelled_page_count_and_size(corpus):
    files, rows = corpus
    scans = [row for row in good_rows(rows) if kind(row) != "text_pdf"]
    for row in scans:
        data = files[row["filename"]]
        width, height = PAGE_SIZES[row["page_size"]]
        assert 150 <= row["dpi"] <= 300 and row["scan_quality"]["grade"] in ("clean", "fair", "poor")
        assert 0 < row["scan_quality"]["ink"] + 1 < row["scan_quality"]["paper"]
        if row["format"] == "pdf":
            pages = pdf_text(data)
            assert len(pages) == row["pages"]
            assert all(not text.strip() for text in pages), row["filename"]
            page_width, page_height = pypdfium2.PdfDocument(data)[0].get_size()
            assert abs(page_width - width) < 1.5 and abs(page_height - height) < 1.5
        else:
            image = Image.open(io.BytesIO(data))
            assert getattr(image, "n_frames", 1) == row["pages"]
            sheets = row["sheets"] if row["format"] in ("png", "jpeg") else 1
            expected = (width * row["dpi"] / 72, height * row["dpi"] / 72 * sheets)
            assert all(abs(got - want) <= sheets for got, want in zip(image.size, expected, strict=True))
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
            assert name in row["fields"]
            if name == "interest_rate":
                assert parse_rate(printed[name]) >= 30
            elif name == "principal":
                assert parse_money(printed[name]) < 0
            else:
                assert parse_date(printed[name]).year >= date.today().year + 5
        if kind(row) == "text_pdf":
            text = "\n".join(pdf_text(files[row["filename"]]))
            assert all(printed[name] in text for name in row["anomalies"])
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
        assert row["fields"] == original["fields"] and row["family"] == original["family"]


def test_rescans_reprint_their_original_at_another_scan_quality(corpus, by_name):
    """Whether preprocessing finds them is tested in test_preprocess_metrics."""
    _, rows = corpus
    rescans = [row for row in good_rows(rows) if row["near_duplicate_of"]]
    assert rescans
    for row in rescans:
        original = by_name[row["near_duplicate_of"]]
        assert original["filename"] < row["filename"]
        assert original["fields"] == row["fields"] and row["sha256"] != original["sha256"]
        assert (original["family"], original["title"], original["font"]) == (
            row["family"],
            row["title"],
            row["font"],
        )
        assert row["dpi"] is not None and (row["dpi"], row["scan_quality"]) != (
            original["dpi"],
            original["scan_quality"],
        )


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_tesseract_reads_the_worst_poor_scan(kind, monkeypatch):
    """Courier (the thinnest strokes) at 150 DPI with the most blur, skew and noise a poor scan
    gets, as grey ink on grey paper (PNG) or with the hardest JPEG compression."""
    document = make_document("label_list", "billing_statement", "ocr", 1, fonts=["Courier"])
    noise, blur, rotation = GRADES["poor"]
    ink, paper = (LOW_CONTRAST_INK[1] - 1, LOW_CONTRAST_PAPER[0]) if kind == "png" else (24, 236)
    quality = ScanQuality(
        "poor",
        min(noise, NOISE_PER_CONTRAST * (paper - ink)),
        blur,
        rotation,
        paper,
        ink,
        POOR_JPEG_QUALITY[0],
        "L",
    )
    data, row = render(document, kind, random.Random(0), dpi=150, quality=quality)
    monkeypatch.setenv("OMP_THREAD_LIMIT", "1")
    image, scale = Image.open(io.BytesIO(data)), 150 / 72
    _, _, top, _, bottom = row["field_boxes"]["account_number"]
    header, account = (0, 165), (top - 30, bottom + 30)  # points; skew moves text < 20 pt
    text = " ".join(
        ocr_page(image.crop((0, low * scale, image.width, high * scale)).convert("L"), 0, dpi=150).text
        for low, high in (header, account)
    )
    assert row["title"].casefold() in " ".join(text.split()).casefold()
    assert row["printed"]["account_number"] in re.sub(r"\s+", "", text)


def test_special_documents_scale_with_the_corpus():
    assert special_counts(10) == (1, 1, 3)
    duplicates, near, anomalous = special_counts(200)
    assert duplicates > 1 and near > 1 and anomalous > 3
    assert duplicates + near + anomalous < 200 // 4
    assert special_counts(0) == (0, 0, 0)
