"""Deterministic synthetic corpus of student-loan documents with ground-truth labels.

The pipeline has no real borrower data to be developed or tested against, so this module
fabricates a landing area that looks like one: six document types from fictional servicers,
as text PDFs, scanned PDFs, PNG, JPEG and multi-page TIFF of varying scan quality, plus the
bad input a real bucket receives (corrupt, truncated, empty, encrypted, oversized files, a
decompression bomb, a text file), exact duplicates, re-scans and implausible values.
``labels.jsonl`` records the truth for every file so each stage can be scored against it.

The same ``(count, seed)`` always yields byte-identical files, so a corpus can be
regenerated instead of stored, and test expectations never drift.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import json
import random
import re
import struct
import textwrap
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np
import pypdfium2
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, ByteStringObject

from mlops.models import DOCUMENT_TYPES as DOC_TYPES
from mlops.models import FIELD_NAMES, REQUIRED_FIELDS, DocumentFormat, QuarantineReason

LABELS_FILENAME = "labels.jsonl"
PAGE_WIDTH_PT = 612.0
PAGE_HEIGHT_PT = 792.0
MARGIN_PT = 72.0
SCAN_DPIS = (150, 200, 240, 300)
BOMB_SIDE_PX = 20_000
FIXED_CREATION_DATE = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)
FIELD_LABELS = {
    "borrower_name": "Borrower Name",
    "account_number": "Account Number",
    "servicer": "Servicer",
    "principal": "Principal Balance",
    "interest_rate": "Interest Rate",
    "disbursement_date": "Disbursement Date",
    "term_months": "Repayment Term",
    "monthly_payment": "Monthly Payment",
}
ANOMALOUS_FIELDS = ("interest_rate", "principal", "disbursement_date")
RENDER_KINDS = ("text_pdf", "image_pdf", "png", "jpeg", "tiff")
KIND_EXTENSIONS = {"text_pdf": ".pdf", "image_pdf": ".pdf", "png": ".png", "jpeg": ".jpg", "tiff": ".tif"}
KIND_FORMATS = {
    "text_pdf": DocumentFormat.PDF,
    "image_pdf": DocumentFormat.PDF,
    "png": DocumentFormat.PNG,
    "jpeg": DocumentFormat.JPEG,
    "tiff": DocumentFormat.TIFF,
}

SERVICERS = (
    ("Cobalt Student Loan Servicing", "P.O. Box 4410, Dayton, OH 45401", "1-800-555-0142"),
    ("Harborlight Education Finance", "P.O. Box 872, Portland, ME 04104", "1-800-555-0177"),
    ("Meridian Ridge Loan Services", "P.O. Box 21930, Boise, ID 83701", "1-800-555-0118"),
    ("Bluestem Student Lending", "P.O. Box 655, Wichita, KS 67201", "1-800-555-0163"),
    ("Tallowpine Education Loans", "P.O. Box 3307, Asheville, NC 28802", "1-800-555-0129"),
    ("Quillfeather Student Finance", "P.O. Box 1188, Rapid City, SD 57709", "1-800-555-0191"),
)
SCHOOLS = (
    "Northfield State University",
    "Larkspur Community College",
    "Eastbrook Institute of Technology",
    "Saint Brigid College",
    "Pine Hollow University",
    "Westmere School of Nursing",
)
FIRST_NAMES = (
    "Maria", "James", "Aisha", "Daniel", "Priya", "Marcus", "Elena", "Tomas", "Grace", "Kwame",
    "Sofia", "Ethan", "Mei", "Jordan", "Fatima", "Lucas", "Hannah", "Diego", "Nadia", "Owen",
    "Ingrid", "Rafael", "Chloe", "Samuel", "Yuki", "Andre", "Leila", "Victor", "Ruth", "Malik",
)  # fmt: skip
LAST_NAMES = (
    "Okafor", "Lindqvist", "Ramirez", "Thornbury", "Nakamura", "Petrovic", "Abernathy", "Castellano",
    "Whitfield", "Oyelaran", "Brennan", "Kowalczyk", "Delacroix", "Haverford", "Mbeki", "Sorensen",
    "Quintero", "Ashdown", "Varga", "Holloway", "Chandrasekar", "Fairbanks", "Moreau", "Eastwood",
    "Tanaka", "Gallagher", "Ivanova", "Pemberton", "Osei", "Rutherford",
)  # fmt: skip

TYPE_FIELDS = REQUIRED_FIELDS
CORE_FIELDS = ("borrower_name", "account_number", "servicer")

TITLES = {
    "master_promissory_note": ("Master Promissory Note", "Private Education Loan - Borrower Agreement"),
    "disclosure_statement": ("Loan Disclosure Statement", "Truth in Lending Disclosure - Final Terms"),
    "billing_statement": ("Monthly Billing Statement", "Student Loan Account Summary"),
    "deferment_forbearance_request": (
        "Deferment/Forbearance Request",
        "Request to Temporarily Postpone or Reduce Payments",
    ),
    "idr_application": ("Income-Driven Repayment Plan Request", "Application and Annual Recertification"),
    "enrollment_verification": ("Enrollment Verification", "Certification of Student Enrollment Status"),
}

# Body text per document type ("continuation" fills later pages). An unindented line names the
# type, "  Heading: text" starts a section and deeper-indented lines continue its text.
_SECTION_TEXT = """
master_promissory_note
  Promise to Pay: I promise to pay to the order of the lender the principal amount shown above,
    together with interest at the stated interest rate and any charges due under this promissory note,
    until the loan is paid in full.
  Borrower's Certification: By signing this Master Promissory Note, I certify that the information I
    have provided is true and complete and that I will use the loan proceeds only for educational expenses.
  Governing Law: This promissory note is governed by federal law and, where not preempted, by the laws
    of the state in which the lender is located.
disclosure_statement
  Truth in Lending: This disclosure statement describes the final terms of your loan. The annual
    percentage rate is the cost of your credit as a yearly rate; the finance charge is the dollar amount
    the credit will cost you.
  Itemization of Amount Financed: An itemization of the amount financed, including any origination fee,
    is available on request.
  Prepayment: You may prepay all or part of your loan at any time without penalty. Total of payments
    assumes every payment is made on time.
billing_statement
  Payment Information: The amount due includes principal and interest for the current billing period.
    Please remit payment by the payment due date to avoid a late fee.
  Past Due Amounts: If a past due amount is shown, pay it immediately. Late payments may be reported to
    consumer reporting agencies.
  Payment Coupon: Detach and return the payment coupon with your check or money order. Write your
    account number on your payment.
deferment_forbearance_request
  Request: I request a temporary suspension of my monthly payments during the deferment or forbearance
    period shown above.
  Interest Accrual: I understand that interest may continue to accrue during forbearance and that unpaid
    interest may be capitalized at the end of the forbearance period.
  Supporting Documentation: Proof of economic hardship, unemployment or in-school enrollment must be
    attached to this request to establish deferment eligibility.
idr_application
  Purpose: Use this form to apply for an income-driven repayment plan or to recertify your income and
    family size.
  Payment Calculation: Your monthly payment amount is based on your adjusted gross income, your family
    size and the poverty guideline for your state of residence.
  Annual Recertification: You must recertify your income and family size every year to remain on an
    income-driven repayment plan.
enrollment_verification
  Registrar Certification: The registrar certifies that the student named above is enrolled at the
    institution for the academic term shown.
  Use of This Information: Enrollment status is reported to the loan servicer to determine in-school
    deferment eligibility and the start of the grace period.
  Changes in Enrollment: The institution will notify the servicer if the student withdraws, graduates or
    drops below half-time enrollment.
continuation
  Late Charges: If any part of a payment is not received within 15 days after it is due, a late charge
    of up to 6 percent of the unpaid amount may be assessed.
  Credit Reporting: Information about your account, including late payments and defaults, may be
    reported to one or more consumer reporting agencies.
  Privacy Notice: We collect and use your personal information only to service your loan, as described
    in our privacy policy.
  Electronic Communications: You may choose to receive notices, statements and disclosures
    electronically by updating the preferences for your online account.
  Servicemembers: If you are on active military duty, you may be eligible for an interest rate reduction
    and other benefits under federal law.
  Definitions: Capitalization means adding unpaid interest to the principal balance. Grace period means
    the time before repayment begins after you leave school.
  Your Rights: You have the right to request a copy of this document and a payoff statement at any time
    at no cost.
"""


def _parse_sections(text: str) -> dict[str, tuple[tuple[str, str], ...]]:
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for line in text.strip().splitlines():
        if not line.startswith(" "):
            current = sections.setdefault(line.strip(), [])
        elif not line.startswith("    "):
            heading, body = line.strip().split(": ", 1)
            current.append([heading, body])
        else:
            current[-1][1] += " " + line.strip()
    return {key: tuple((heading, body) for heading, body in value) for key, value in sections.items()}


SECTIONS = _parse_sections(_SECTION_TEXT)
CONTINUATION_SECTIONS = SECTIONS.pop("continuation")
BOILERPLATE = (
    "Please keep a copy of this document for your records.",
    "If you have questions about your account, call {servicer} at {phone}, Monday through Friday.",
    "Send correspondence to {servicer}, {address}.",
)


@dataclass(frozen=True)
class DrawOp:
    """One thing on a page, in PDF points from the top-left, shared by the PDF and image renderers.

    Both renderers draw the same ops, so a text PDF and its scan have the same layout, which is
    what makes a re-scan a perceptual near-duplicate of its original.
    """

    kind: str
    x: float
    y: float
    text: str = ""
    size: float = 11.0
    bold: bool = False
    gray: int = 0
    width: float = 0.0
    height: float = 0.0


@dataclass(frozen=True)
class Document:
    """The content of one loan document: its truth (values) and what is printed on its pages."""

    doc_type: str
    servicer: str
    values: dict[str, object]
    printed: dict[str, str]
    pages: tuple[tuple[DrawOp, ...], ...]
    anomalies: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScanQuality:
    grade: str
    noise: float
    blur: float
    rotation: float
    paper: int
    jpeg_quality: int
    mode: str

    def label(self) -> dict[str, object]:
        return {
            "grade": self.grade,
            "noise": self.noise,
            "blur": self.blur,
            "rotation": self.rotation,
            "mode": self.mode,
        }


@dataclass
class Slot:
    """The plan for one good file: what it contains and how it is rendered."""

    index: int
    doc_type: str
    kind: str
    pages: int
    anomaly: str | None = None
    duplicate_of: int | None = None
    near_duplicate_of: int | None = None
    printed_from_pdf: bool = False
    document: Document | None = field(default=None, repr=False)


def generate_corpus(
    count: int,
    seed: int,
    write: Callable[[str, bytes], None],
    *,
    max_file_bytes: int = 50 * 1024 * 1024,
    include_bad: bool = True,
) -> list[dict]:
    """Writes `count` good documents, plus (if include_bad) the fixed set of bad inputs, then `labels.jsonl`,
    each through write(relative_filename, data). Returns the label rows (the same as labels.jsonl).

    Good files include a few exact duplicates, re-scanned near-duplicates and documents with
    implausible values (each still a valid document that must not be quarantined); they count
    towards `count`. Bad inputs are named ``bad-*`` and carry ``expected_quarantine_reason``.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    rows: list[dict] = []
    outputs: dict[int, tuple[str, bytes, dict]] = {}
    for slot in _plan(count, seed):
        filename = f"doc-{slot.index + 1:04d}{KIND_EXTENSIONS[slot.kind]}"
        if slot.duplicate_of is not None:
            original_name, data, original_row = outputs[slot.duplicate_of]
            row = {**original_row, "duplicate_of": original_name}
        else:
            rng = random.Random(f"{seed}:render:{slot.index}")
            data, row = _render(slot.document, slot.kind, slot.pages, rng, slot.printed_from_pdf)
            if slot.near_duplicate_of is not None:
                row["near_duplicate_of"] = outputs[slot.near_duplicate_of][0]
        row = _finish_row(row, filename, data)
        outputs[slot.index] = (filename, data, row)
        write(filename, data)
        rows.append(row)
    if include_bad:
        for filename, data, row in _bad_inputs(seed, max_file_bytes):
            row = _finish_row(row, filename, data)
            write(filename, data)
            rows.append(row)
    rows.sort(key=lambda r: r["filename"])
    write(LABELS_FILENAME, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())
    return rows


def special_counts(count: int) -> tuple[int, int, int]:
    """How many (duplicates, near-duplicates, anomalous documents) a corpus of `count` gets.

    At least one of each from 10 documents up (three anomalous, one per anomalous field),
    growing slowly so a big corpus stays mostly ordinary.
    """
    if count >= 10:
        return max(1, count // 15), max(1, count // 20), max(3, count // 12)
    if count >= 4:
        return 1, 1, min(3, count - 3)
    return 0, 0, min(1, count)


def _plan(count: int, seed: int) -> list[Slot]:
    rng = random.Random(f"{seed}:plan")
    n_dup, n_near, n_anom = special_counts(count)
    copy_positions = sorted(rng.sample(range(max(1, count // 2), count), n_dup + n_near))
    copy_kinds = ["dup"] * n_dup + ["near"] * n_near
    rng.shuffle(copy_kinds)
    originals = [i for i in range(count) if i not in copy_positions]

    kinds = _balanced(RENDER_KINDS, len(originals), rng)
    types = _balanced(DOC_TYPES, len(originals), rng)
    slots = {
        i: Slot(i, doc_type, kind, _page_count(kind, rng))
        for i, doc_type, kind in zip(originals, types, kinds, strict=True)
    }
    for n in range(min(n_anom, len(originals))):
        anomaly = ANOMALOUS_FIELDS[n % len(ANOMALOUS_FIELDS)]
        free = [slots[i] for i in originals if slots[i].anomaly is None]
        eligible = [slot for slot in free if anomaly in TYPE_FIELDS[slot.doc_type]]
        slot = rng.choice(eligible or free)
        slot.anomaly = anomaly
        if anomaly not in TYPE_FIELDS[slot.doc_type]:
            slot.doc_type = "disclosure_statement"
    for i in originals:
        slots[i].document = _make_document(slots[i].doc_type, slots[i].pages, slots[i].anomaly, seed, i)

    for position, copy_kind in zip(copy_positions, copy_kinds, strict=True):
        earlier = [i for i in originals if i < position]
        candidates = [i for i in earlier if slots[i].anomaly is None] or earlier
        source = slots[rng.choice(candidates)]
        if copy_kind == "dup":
            slots[position] = replace(source, index=position, duplicate_of=source.index)
        else:
            kind = rng.choice(("image_pdf", "png", "jpeg", "tiff"))
            pages = source.pages if kind == "image_pdf" else _page_count(kind, rng)
            document = _with_page_count(source.document, pages, seed, source.index)
            slots[position] = Slot(
                position,
                source.doc_type,
                kind,
                pages,
                source.anomaly,
                near_duplicate_of=source.index,
                printed_from_pdf=source.kind == "text_pdf",
                document=document,
            )
    return [slots[i] for i in range(count)]


def _balanced(options: tuple[str, ...], n: int, rng: random.Random) -> list[str]:
    """n choices that use every option about equally often, in random order."""
    result = list(options) * (n // len(options)) + rng.sample(options, n % len(options))
    rng.shuffle(result)
    return result


def _page_count(kind: str, rng: random.Random) -> int:
    if kind == "tiff":
        return rng.choice((2, 3))
    if kind in ("text_pdf", "image_pdf"):
        return rng.choice((1, 1, 2))
    return 1


# ---------------------------------------------------------------- document content


def _make_document(doc_type: str, pages: int, anomaly: str | None, seed: int, index: int) -> Document:
    rng = random.Random(f"{seed}:content:{index}")
    servicer, address, phone = rng.choice(SERVICERS)
    principal = round(rng.uniform(3_500, 95_000), 2)
    rate = round(
        rng.choice((3.73, 4.45, 4.99, 5.28, 5.50, 6.54, 6.80, 7.05, 7.54, 8.25)) + rng.choice((0, 0.25)), 2
    )
    term = rng.choice((60, 120, 120, 180, 240, 300))
    disbursed = date(2014, 1, 1) + timedelta(days=rng.randrange(0, 365 * 10))
    middle = f" {rng.choice('ABCDEFGHJKLMNPRSTW')}." if rng.random() < 0.4 else ""
    values: dict[str, object] = {
        "borrower_name": f"{rng.choice(FIRST_NAMES)}{middle} {rng.choice(LAST_NAMES)}",
        "account_number": f"{rng.randrange(1000, 10000)}-{rng.randrange(0, 10000):04d}-{rng.randrange(0, 100):02d}",
        "servicer": servicer,
        "principal": principal,
        "interest_rate": rate,
        "disbursement_date": disbursed,
        "term_months": term,
        "monthly_payment": _amortized_payment(principal, rate, term),
    }
    if anomaly == "interest_rate":
        values["interest_rate"] = 48.0
    elif anomaly == "principal":
        values["principal"] = -round(rng.uniform(500, 9_000), 2)
    elif anomaly == "disbursement_date":
        values["disbursement_date"] = date(
            rng.randrange(2045, 2050), rng.randrange(1, 13), rng.randrange(1, 29)
        )

    present = list(TYPE_FIELDS[doc_type])
    optional = [f for f in present if f not in CORE_FIELDS and f != anomaly]
    if optional and rng.random() < 0.2:
        present.remove(rng.choice(optional))
    date_style = rng.randrange(3)
    printed = {name: _format_value(name, values[name], date_style) for name in present}
    context = {
        "servicer": servicer,
        "address": address,
        "phone": phone,
        "school": rng.choice(SCHOOLS),
        "values": values,
        "rng": rng,
        "date_style": date_style,
        "style": _layout_style(doc_type, rng),
    }
    page_ops = tuple(_layout_page(doc_type, n, pages, printed, context) for n in range(pages))
    kept = {name: values[name] for name in present}
    return Document(doc_type, servicer, kept, printed, page_ops, (anomaly,) if anomaly else ())


def _with_page_count(document: Document, pages: int, seed: int, index: int) -> Document:
    """The same document laid out over a different number of pages (page 1 is unchanged)."""
    if pages == len(document.pages):
        return document
    rebuilt = _make_document(
        document.doc_type, pages, document.anomalies[0] if document.anomalies else None, seed, index
    )
    return replace(document, pages=rebuilt.pages)


def _amortized_payment(principal: float, rate_percent: float, months: int) -> float:
    monthly_rate = rate_percent / 100 / 12
    return round(principal * monthly_rate / (1 - (1 + monthly_rate) ** -months), 2)


def _format_value(name: str, value: object, date_style: int) -> str:
    if name in ("principal", "monthly_payment"):
        return _money(float(value))
    if name == "interest_rate":
        return f"{value:.2f}%"
    if name == "term_months":
        return f"{value} months"
    if name == "disbursement_date":
        return _format_date(value, date_style)
    return str(value)


def _money(amount: float) -> str:
    return f"-${-amount:,.2f}" if amount < 0 else f"${amount:,.2f}"


def _format_date(day: date, style: int) -> str:
    if style == 0:
        return f"{day.month:02d}/{day.day:02d}/{day.year}"
    if style == 1:
        return f"{calendar.month_name[day.month]} {day.day}, {day.year}"
    return day.isoformat()


def _extra_lines(doc_type: str, context: dict) -> list[tuple[str, str]]:
    """Type-specific "Label: value" lines that are not ground-truth fields but help a classifier."""
    rng: random.Random = context["rng"]
    values = context["values"]
    style = context["date_style"]
    payment = float(values["monthly_payment"])
    principal = abs(float(values["principal"]))
    statement = date(2024, rng.randrange(1, 13), rng.randrange(1, 29))
    if doc_type == "master_promissory_note":
        return [("School Name", context["school"]), ("Loan Type", "Undergraduate Education Loan")]
    if doc_type == "disclosure_statement":
        total = payment * int(values["term_months"])
        apr = float(values["interest_rate"]) + rng.choice((0.06, 0.11, 0.18))
        return [
            ("Annual Percentage Rate (APR)", f"{apr:.2f}%"),
            ("Finance Charge", _money(total - principal)),
            ("Total of Payments", _money(total)),
        ]
    if doc_type == "billing_statement":
        return [
            ("Statement Date", _format_date(statement, style)),
            ("Payment Due Date", _format_date(statement + timedelta(days=25), style)),
            ("Amount Due", _money(payment)),
            ("Past Due Amount", _money(0.0)),
        ]
    if doc_type == "deferment_forbearance_request":
        kind = rng.choice(("Economic Hardship Deferment", "General Forbearance", "Unemployment Deferment"))
        return [("Request Type", kind), ("Requested Start Date", _format_date(statement, style))]
    if doc_type == "idr_application":
        plan = rng.choice(
            ("Income-Based Repayment (IBR)", "Pay As You Earn (PAYE)", "Income-Contingent (ICR)")
        )
        return [
            ("Requested Plan", plan),
            ("Family Size", str(rng.randrange(1, 6))),
            ("Adjusted Gross Income", _money(round(rng.uniform(18_000, 95_000), 2))),
        ]
    status = rng.choice(("Full-time", "Half-time", "Three-quarter time"))
    return [
        ("Institution", context["school"]),
        ("Enrollment Status", status),
        ("Academic Term", f"{rng.choice(('Fall', 'Spring'))} {statement.year}"),
    ]


NOTICES = (
    "IMPORTANT: Keep your contact information up to date so you do not miss notices about your loan.",
    (
        "NOTICE: Enroll in automatic payments and you may qualify for a 0.25 percentage point interest rate "
        "reduction."
    ),
    "REMINDER: You can review your payment history, tax forms and correspondence online at any time.",
    "ATTENTION: Never share your account password. We will never ask for it by phone or email.",
)
BOTTOM_PT = 735.0


def _layout_style(doc_type: str, rng: random.Random) -> dict:
    """Per-document spacing and optional blocks, so unrelated documents from one servicer do not
    share a pixel layout (a re-scan keeps its original's style, and stays a near-duplicate)."""
    return {
        "field_gap": rng.choice((17.0, 19.0, 21.0)),
        "body_gap": rng.choice((14.0, 15.5)),
        "wrap": rng.choice((76, 84)),
        "notice": rng.choice((None, 0, 1, 2)),
        "notice_text": rng.choice(NOTICES),
        "extra_sections": rng.sample(CONTINUATION_SECTIONS, rng.randrange(0, 3)),
        "indent": rng.choice((0.0, 0.0, 18.0)),
        "dark_headings": doc_type in ("idr_application", "deferment_forbearance_request"),
    }


def _paragraph(heading: str, body: str, y: float, style: dict) -> tuple[list[DrawOp], float]:
    """A headed paragraph; federal-style forms put the heading in white on a dark bar."""
    if style["dark_headings"]:
        ops = [
            DrawOp("rect", MARGIN_PT, y - 13, gray=45, width=PAGE_WIDTH_PT - 2 * MARGIN_PT, height=18),
            DrawOp("text", MARGIN_PT + 6, y, heading, size=12, bold=True, gray=255),
        ]
        y += 21
    else:
        ops = [DrawOp("text", MARGIN_PT, y, heading, size=12, bold=True)]
        y += 17
    for line in textwrap.wrap(body, style["wrap"]):
        ops.append(DrawOp("text", MARGIN_PT + style["indent"], y, line, size=11))
        y += style["body_gap"]
    return ops, y + 10


def _notice(text: str, y: float, style: dict) -> tuple[list[DrawOp], float]:
    lines = textwrap.wrap(text, 70)
    height = 16.0 * len(lines) + 14
    ops = _outline(MARGIN_PT, y - 4, PAGE_WIDTH_PT - 2 * MARGIN_PT, height, 2.5)
    ops += [DrawOp("text", MARGIN_PT + 12, y + 14 + 16 * n, line, size=11) for n, line in enumerate(lines)]
    return ops, y + height + 10


def _letterhead(context: dict) -> list[DrawOp]:
    """The servicer's letterhead: each servicer has its own bar position, width and height."""
    number = [s[0] for s in SERVICERS].index(context["servicer"])
    width = (250.0, 468.0, 300.0, 360.0, 468.0, 280.0)[number]
    height = (34.0, 30.0, 46.0, 34.0, 40.0, 52.0)[number]
    x = PAGE_WIDTH_PT - MARGIN_PT - width if number in (2, 5) else MARGIN_PT
    return [
        DrawOp("rect", x, 36, gray=(60, 30, 90, 45, 75, 20)[number], width=width, height=height),
        DrawOp("text", x + 10, 36 + height / 2 + 5, context["servicer"], size=13, bold=True, gray=255),
        DrawOp("text", MARGIN_PT, 100, f"{context['address']}  |  {context['phone']}", size=9),
    ]


def _outline(x: float, y: float, width: float, height: float, weight: float = 1.5) -> list[DrawOp]:
    return [
        DrawOp("rect", x, y, width=width, height=weight),
        DrawOp("rect", x, y + height - weight, width=width, height=weight),
        DrawOp("rect", x, y, width=weight, height=height),
        DrawOp("rect", x + width - weight, y, width=weight, height=height),
    ]


def _type_marks(doc_type: str, top: float, bottom: float, context: dict) -> list[DrawOp]:
    """Graphics around the field block that make each document type look different at a glance."""
    right = PAGE_WIDTH_PT - MARGIN_PT
    if doc_type == "billing_statement":
        box = [DrawOp("rect", right - 150, top - 14, gray=70, width=150, height=56)]
        return box + [
            DrawOp("text", right - 140, top + 8, "AMOUNT DUE", size=12, bold=True, gray=255),
            DrawOp(
                "text",
                right - 140,
                top + 30,
                _money(float(context["values"]["monthly_payment"])),
                size=13,
                bold=True,
                gray=255,
            ),
        ]
    if doc_type == "disclosure_statement":
        x = right - 130
        words = ("ANNUAL", "PERCENTAGE", "RATE", "The cost of your", "credit as a", "yearly rate.")
        return _outline(x, top - 14, 130, bottom - top + 4, 3.0) + [
            DrawOp("text", x + 10, top + 8 + 18 * n, word, size=11, bold=n < 3)
            for n, word in enumerate(words)
        ]
    if doc_type == "enrollment_verification":
        return _outline(MARGIN_PT - 8, top - 18, PAGE_WIDTH_PT - 2 * MARGIN_PT + 16, bottom - top + 14, 2.5)
    if doc_type == "master_promissory_note":
        return _outline(MARGIN_PT - 8, top - 18, 300, bottom - top + 14, 1.0)
    return []


def _layout_page(doc_type: str, page: int, pages: int, printed: dict[str, str], context: dict) -> tuple:
    """Page `page` (0-based) of a document, as draw ops; page 1 holds every field.

    Optional blocks (notice box, general sections, boilerplate) are dropped when the page is full.
    """
    style = context["style"]
    ops = _letterhead(context)
    title, subtitle = TITLES[doc_type]
    y = 122.0
    if page == 0:
        ops.append(DrawOp("text", MARGIN_PT, y, title, size=20, bold=True))
        ops.append(DrawOp("text", MARGIN_PT, y + 22, subtitle, size=12))
        ops.append(DrawOp("rect", MARGIN_PT, y + 32, width=PAGE_WIDTH_PT - 2 * MARGIN_PT, height=1.5))
        y += 58
        lines = [(FIELD_LABELS[name], printed[name]) for name in FIELD_NAMES if name in printed]
        lines += _extra_lines(doc_type, context)
        top = y
        for label, value in lines:
            ops.append(DrawOp("text", MARGIN_PT, y, f"{label}: {value}", size=12))
            y += style["field_gap"]
        ops += _type_marks(doc_type, top, y, context)
        y += 12
        required = list(SECTIONS[doc_type])
        optional = list(style["extra_sections"])
    else:
        heading = f"{title} - Terms and Conditions (continued)"
        ops.append(DrawOp("text", MARGIN_PT, y, heading, size=14, bold=True))
        if "account_number" in printed:
            ops.append(
                DrawOp("text", MARGIN_PT, y + 20, f"Account Number: {printed['account_number']}", size=11)
            )
        y += 50
        required = []
        optional = list(CONTINUATION_SECTIONS[(page - 1) * 3 : (page - 1) * 3 + 4])
    for n, (heading, body) in enumerate(required + optional):
        if page == 0 and n == style["notice"]:
            block, end = _notice(style["notice_text"], y, style)
            if end < BOTTOM_PT - 120:
                ops += block
                y = end
        block, end = _paragraph(heading, body, y, style)
        if n >= len(required) and end > BOTTOM_PT:
            break
        ops += block
        y = end
    if page == 0:
        for sentence in BOILERPLATE:
            lines = textwrap.wrap(sentence.format(**context), style["wrap"])
            if y + style["body_gap"] * len(lines) > BOTTOM_PT:
                break
            for line in lines:
                ops.append(DrawOp("text", MARGIN_PT, y, line, size=11))
                y += style["body_gap"]
    ops.append(DrawOp("text", MARGIN_PT, 750, "Synthetic sample document - not a real loan record.", size=8))
    ops.append(DrawOp("text", PAGE_WIDTH_PT - MARGIN_PT - 50, 750, f"Page {page + 1} of {pages}", size=9))
    return tuple(ops)


# ---------------------------------------------------------------- rendering


def _render(
    document: Document, kind: str, pages: int, rng: random.Random, printed_from_pdf: bool = False
) -> tuple[bytes, dict]:
    """The document as a file of `kind`. A re-scan of a text PDF is a scan of that PDF as printed
    (same typeface), so its pages match the original as a near-duplicate detector would see them."""
    row = _document_row(document, kind, pages)
    if kind == "text_pdf":
        return _text_pdf(document), row
    dpi = rng.choice(SCAN_DPIS)
    quality = _scan_quality(kind, rng)
    noise_rng = np.random.default_rng(rng.getrandbits(64))
    if printed_from_pdf:
        clean = _print_pdf(_text_pdf(document), dpi, quality.paper)[:pages]
    else:
        clean = [_rasterize(ops, dpi, quality.paper) for ops in document.pages[:pages]]
    images = [_scan(page, quality, noise_rng) for page in clean]
    row.update(dpi=dpi, scan_quality=quality.label())
    return _encode_scan(images, kind, dpi, quality, TITLES[document.doc_type][0]), row


def _print_pdf(pdf: bytes, dpi: int, paper: int) -> list[Image.Image]:
    """Every page of a PDF rendered by PDFium onto paper of gray level `paper`."""
    document = pypdfium2.PdfDocument(pdf)
    try:
        return [
            page.render(scale=dpi / 72, grayscale=True, fill_color=(paper, paper, paper, 255))
            .to_pil()
            .convert("L")
            for page in document
        ]
    finally:
        document.close()


def _document_row(document: Document, kind: str, pages: int) -> dict:
    return {
        "doc_type": document.doc_type,
        "servicer": document.servicer,
        "format": KIND_FORMATS[kind].value,
        "has_text_layer": kind == "text_pdf",
        "pages": pages,
        "dpi": None,
        "scan_quality": None,
        "fields": {name: _label_value(v) for name, v in document.values.items()},
        "printed": dict(document.printed),
        "expected_quarantine_reason": None,
        "duplicate_of": None,
        "near_duplicate_of": None,
        "anomalies": list(document.anomalies),
    }


def _label_value(value: object) -> object:
    return value.isoformat() if isinstance(value, date) else value


def _finish_row(row: dict, filename: str, data: bytes) -> dict:
    return {**row, "filename": filename, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}


def _text_pdf(document: Document) -> bytes:
    pdf = FPDF(unit="pt", format="letter")
    pdf.set_auto_page_break(False)
    pdf.set_creation_date(FIXED_CREATION_DATE)
    pdf.set_title(TITLES[document.doc_type][0])
    pdf.set_author(document.servicer)
    for ops in document.pages:
        pdf.add_page()
        for op in ops:
            if op.kind == "rect":
                pdf.set_fill_color(op.gray)
                pdf.rect(op.x, op.y, op.width, op.height, style="F")
            else:
                pdf.set_font("Helvetica", "B" if op.bold else "", op.size)
                pdf.set_text_color(op.gray)
                pdf.text(op.x, op.y, op.text)
    return bytes(pdf.output())


@lru_cache(maxsize=64)
def _font(pixels: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=pixels)


def _rasterize(ops: tuple[DrawOp, ...], dpi: int, paper: int = 255) -> Image.Image:
    """A clean grayscale Letter page at `dpi`; text size follows the points, so ~12 pt at any DPI."""
    scale = dpi / 72
    image = Image.new("L", (round(PAGE_WIDTH_PT * scale), round(PAGE_HEIGHT_PT * scale)), paper)
    draw = ImageDraw.Draw(image)
    for op in ops:
        ink = op.gray * paper // 255
        if op.kind == "rect":
            box = (op.x * scale, op.y * scale, (op.x + op.width) * scale, (op.y + op.height) * scale)
            draw.rectangle(box, fill=ink)
        else:
            stroke = max(1, round(scale / 3)) if op.bold else 0
            draw.text(
                (op.x * scale, op.y * scale),
                op.text,
                font=_font(round(op.size * scale)),
                fill=ink,
                anchor="ls",
                stroke_width=stroke,
                stroke_fill=ink,
            )
    return image


def _scan_quality(kind: str, rng: random.Random) -> ScanQuality:
    """Clean, fair or poor scan settings; even 'poor' stays readable by Tesseract.

    TIFFs are half bilevel (CCITT Group 4, as document scanners write them) and half grayscale;
    some JPEGs are colour scans.
    """
    grade = rng.choice(("clean", "fair", "poor"))
    noise, blur, rotation = {"clean": (3, 0.0, 0.3), "fair": (12, 0.6, 1.0), "poor": (24, 1.0, 2.0)}[grade]
    mode = "L"
    if kind == "tiff" and rng.random() < 0.5:
        mode = "1"
    elif kind == "jpeg" and rng.random() < 0.4:
        mode = "RGB"
    return ScanQuality(
        grade=grade,
        noise=round(rng.uniform(noise / 3, noise), 1),
        blur=round(rng.uniform(blur / 2, blur), 2) if blur else 0.0,
        rotation=round(rng.uniform(-rotation, rotation), 2),
        paper=rng.randrange(236, 256),
        jpeg_quality=rng.randrange(70, 93),
        mode=mode,
    )


def _scan(image: Image.Image, quality: ScanQuality, noise_rng: np.random.Generator) -> Image.Image:
    """Make a clean page look scanned: skew, optical blur (in 300-DPI pixels), sensor noise, colour mode."""
    if abs(quality.rotation) >= 0.05:
        image = image.rotate(quality.rotation, resample=Image.Resampling.BILINEAR, fillcolor=quality.paper)
    if quality.blur:
        image = image.filter(ImageFilter.GaussianBlur(quality.blur * max(image.width / 2550, 0.5)))
    if quality.noise:
        noise = noise_rng.standard_normal((image.height, image.width), dtype=np.float32)
        noise *= quality.noise
        noise += np.asarray(image, dtype=np.float32)
        image = Image.fromarray(np.clip(noise, 0, 255, out=noise).astype(np.uint8))
    if quality.mode == "1":
        return image.point(lambda v: 255 if v > quality.paper * 0.55 else 0).convert("1")
    if quality.mode == "RGB":
        pixels = np.asarray(image, dtype=np.float32)[..., None] * np.array(
            [1.0, 0.98, 0.93], dtype=np.float32
        )
        return Image.fromarray(pixels.astype(np.uint8), "RGB")
    return image


def _encode_scan(images: list[Image.Image], kind: str, dpi: int, quality: ScanQuality, title: str) -> bytes:
    buffer = io.BytesIO()
    first, rest = images[0], images[1:]
    if kind == "png":
        first.save(buffer, "PNG", dpi=(dpi, dpi), compress_level=3)
    elif kind == "jpeg":
        first.save(buffer, "JPEG", dpi=(dpi, dpi), quality=quality.jpeg_quality)
    elif kind == "tiff":
        codec = (
            {"compression": "group4"}
            if quality.mode == "1"
            else {"compression": "jpeg", "quality": quality.jpeg_quality}
        )
        first.save(buffer, "TIFF", dpi=(dpi, dpi), save_all=True, append_images=rest, **codec)
    else:
        fixed = time.gmtime(FIXED_CREATION_DATE.timestamp())
        first.save(
            buffer,
            "PDF",
            resolution=float(dpi),
            save_all=True,
            append_images=rest,
            title=title,
            creationDate=fixed,
            modDate=fixed,
            quality=quality.jpeg_quality,
        )
    return buffer.getvalue()


# ---------------------------------------------------------------- bad input


def _bad_inputs(seed: int, max_file_bytes: int) -> list[tuple[str, bytes, dict]]:
    """The fixed set of files a landing bucket receives that must be quarantined, with their labels."""
    rng = random.Random(f"{seed}:bad")
    source = _make_document(rng.choice(DOC_TYPES), 2, None, seed, -1)
    text_pdf = _text_pdf(source)
    page = _rasterize(source.pages[0], 150)
    png = io.BytesIO()
    page.save(png, "PNG", dpi=(150, 150))
    png_bytes = png.getvalue()

    def row(
        reason: QuarantineReason,
        fmt: DocumentFormat | None,
        document: Document | None = None,
        pages: int | None = None,
    ) -> dict:
        if document is None:
            base = {"doc_type": None, "servicer": None, "fields": {}, "printed": {}, "anomalies": []}
        else:
            base = _document_row(document, "text_pdf", pages)
        base.update(
            format=fmt.value if fmt else None,
            pages=pages,
            has_text_layer=bool(fmt is DocumentFormat.PDF and pages),
            dpi=150 if fmt is DocumentFormat.PNG and pages else None,
            scan_quality=None,
            expected_quarantine_reason=reason.value,
            duplicate_of=None,
            near_duplicate_of=None,
        )
        return base

    return [
        (
            "bad-corrupt.pdf",
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + rng.randbytes(8192),
            row(QuarantineReason.CORRUPT, DocumentFormat.PDF),
        ),
        (
            "bad-truncated.pdf",
            text_pdf[: len(text_pdf) * 2 // 5],
            row(QuarantineReason.CORRUPT, DocumentFormat.PDF, source),
        ),
        (
            "bad-truncated.png",
            png_bytes[: len(png_bytes) // 2],
            row(QuarantineReason.CORRUPT, DocumentFormat.PNG, source),
        ),
        ("bad-empty.pdf", b"", row(QuarantineReason.EMPTY_FILE, None)),
        (
            "bad-extension-mismatch.pdf",
            png_bytes,
            row(QuarantineReason.EXTENSION_MISMATCH, DocumentFormat.PNG, source, 1),
        ),
        (
            "bad-encrypted.pdf",
            _encrypted(text_pdf, seed),
            row(QuarantineReason.ENCRYPTED, DocumentFormat.PDF, source, 2),
        ),
        (
            "bad-too-large.pdf",
            _padded_pdf(text_pdf, max_file_bytes + 1),
            row(QuarantineReason.TOO_LARGE, DocumentFormat.PDF, source, 2),
        ),
        (
            "bad-decompression-bomb.png",
            _png_bomb(BOMB_SIDE_PX, BOMB_SIDE_PX),
            row(QuarantineReason.DECOMPRESSION_BOMB, DocumentFormat.PNG),
        ),
        ("bad-notes.txt", _notes(source).encode(), row(QuarantineReason.UNSUPPORTED_FORMAT, None)),
    ]


def _encrypted(pdf: bytes, seed: int) -> bytes:
    """A password-protected copy. RC4-128 with a seed-derived file ID keeps the bytes reproducible
    (pypdf draws the second ID half at random, so both halves are pinned after encrypting)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    file_id = ByteStringObject(hashlib.md5(f"{seed}:encrypted".encode(), usedforsecurity=False).digest())
    writer._ID = ArrayObject((file_id, file_id))
    writer.encrypt(user_password=f"borrower-{seed}", owner_password=f"servicer-{seed}", algorithm="RC4-128")
    writer._ID = ArrayObject((file_id, file_id))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _padded_pdf(pdf: bytes, size: int) -> bytes:
    """A valid PDF of exactly `size` bytes: comment lines appended, then the original startxref repeated."""
    match = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", pdf)
    if match is None:
        raise ValueError("PDF has no trailing startxref")
    tail = b"\nstartxref\n" + match.group(1) + b"\n%%EOF\n"
    filler = size - len(pdf) - len(tail) - 1
    if filler < 2:
        raise ValueError(
            f"max_file_bytes {size - 1} is too small for the oversize sample (min {len(pdf) + 64})"
        )
    line = b"%" + b"0" * 78 + b"\n"
    full, rest = divmod(filler, len(line))
    padding = line * full + (b"%" + b"0" * (rest - 2) + b"\n" if rest >= 2 else b"\n" * rest)
    return pdf + b"\n" + padding + tail


def _png_bomb(width: int, height: int) -> bytes:
    """A 1-bit PNG declaring width x height pixels whose all-zero rows deflate ~1000:1 (~50 KB on disk)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    row = bytes(1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    block = row * 1000
    data = b"".join(compressor.compress(block) for _ in range(height // 1000))
    data += compressor.compress(row * (height % 1000)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def _notes(document: Document) -> str:
    return (
        "Call notes\n"
        f"Borrower {document.values['borrower_name']} called about account {document.values['account_number']}.\n"
        "Asked for a payoff quote; told to expect it by mail.\n"
    )
