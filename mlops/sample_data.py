"""Deterministic synthetic corpus of student-loan documents with ground-truth labels.

The pipeline has no real borrower data to be developed or tested against, so this module
fabricates a landing area that looks like one: six document types from fictional servicers,
each laid out by one of the layout families of ``mlops.document_families`` (drawn in turn, so
every family is about equally common), as text PDFs, scanned PDFs, PNG, JPEG and multi-page
TIFF of varying scan quality, plus the
bad input a real bucket receives (corrupt, truncated, empty, encrypted, oversized files, a
decompression bomb, a text file), exact duplicates, re-scans and implausible values.
``labels.jsonl`` records the truth for every file so each stage can be scored against it.

The same ``(count, seed)`` always yields byte-identical files, so a corpus can be
regenerated instead of stored, and test expectations never drift.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, ByteStringObject

from mlops.document_families import (
    FAMILIES,
    FIELD_LABELS,
    MIN_PAGES,
    Document,
    document_row,
    empty_row,
    make_document,
    page_count,
    render,
)
from mlops.models import DOCUMENT_TYPES as DOC_TYPES
from mlops.models import REQUIRED_FIELDS, DocumentFormat, QuarantineReason
from mlops.sample_rendering import KIND_EXTENSIONS, RENDER_KINDS, rasterize, text_pdf

__all__ = ["DOC_TYPES", "FIELD_LABELS", "LABELS_FILENAME", "generate_corpus", "special_counts"]

LABELS_FILENAME = "labels.jsonl"
BOMB_SIDE_PX = 20_000
ANOMALOUS_FIELDS = ("interest_rate", "principal", "disbursement_date")


@dataclass
class Slot:
    """The plan for one good file: what it contains and how it is rendered."""

    index: int
    doc_type: str
    kind: str
    pages: int
    family: str = "classic"
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
            data, row = render(slot.document, slot.kind, rng, slot.printed_from_pdf)
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


def _finish_row(row: dict, filename: str, data: bytes) -> dict:
    return {**row, "filename": filename, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}


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
    families = _balanced(FAMILIES, len(originals), rng)
    slots = {
        i: Slot(i, doc_type, kind, page_count(kind, rng), family)
        for i, doc_type, kind, family in zip(originals, types, kinds, families, strict=True)
    }
    for n in range(min(n_anom, len(originals))):
        anomaly = ANOMALOUS_FIELDS[n % len(ANOMALOUS_FIELDS)]
        free = [slots[i] for i in originals if slots[i].anomaly is None]
        eligible = [slot for slot in free if anomaly in REQUIRED_FIELDS[slot.doc_type]]
        slot = rng.choice(eligible or free)
        slot.anomaly = anomaly
        if anomaly not in REQUIRED_FIELDS[slot.doc_type]:
            slot.doc_type = "disclosure_statement"
    for i in originals:
        slot = slots[i]
        slot.document = make_document(
            slot.family, slot.doc_type, f"{seed}:content:{i}", slot.pages, slot.anomaly
        )

    for position, copy_kind in zip(copy_positions, copy_kinds, strict=True):
        earlier = [i for i in originals if i < position]
        candidates = [i for i in earlier if slots[i].anomaly is None] or earlier
        source = slots[rng.choice(candidates)]
        if copy_kind == "dup":
            slots[position] = replace(source, index=position, duplicate_of=source.index)
        else:
            kinds = ("image_pdf", "png", "jpeg", "tiff")
            if source.family in MIN_PAGES:  # a single image stacks its pages: rescan it the same way
                single_image = source.kind in ("png", "jpeg")
                kinds = ("png", "jpeg") if single_image else ("image_pdf", "tiff")
            kind = rng.choice(kinds)
            pages = source.pages if kind == "image_pdf" else page_count(kind, rng)
            key = f"{seed}:content:{source.index}"
            document = make_document(source.family, source.doc_type, key, pages, source.anomaly)
            slots[position] = Slot(
                position,
                source.doc_type,
                kind,
                pages,
                source.family,
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


# ---------------------------------------------------------------- bad input


def _bad_inputs(seed: int, max_file_bytes: int) -> list[tuple[str, bytes, dict]]:
    """The fixed set of files a landing bucket receives that must be quarantined, with their labels."""
    rng = random.Random(f"{seed}:bad")
    source = make_document("classic", rng.choice(DOC_TYPES), f"{seed}:content:-1", 2)
    pdf = text_pdf(source.pages, source.page_size, source.title, str(source.servicer))
    page = rasterize(source.pages[0], 150)
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
            base = empty_row()
        else:
            base = document_row(document, "text_pdf", pages or 0)
        base.update(
            format=fmt.value if fmt else None,
            kind=None,
            pages=pages,
            sheets=pages,
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
            pdf[: len(pdf) * 2 // 5],
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
            _encrypted(pdf, seed),
            row(QuarantineReason.ENCRYPTED, DocumentFormat.PDF, source, 2),
        ),
        (
            "bad-too-large.pdf",
            _padded_pdf(pdf, max_file_bytes + 1),
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
