"""Opening untrusted document bytes: format sniffing, safety checks and page rendering.

These functions run inside sandboxed worker processes (see mlops.workers); they never touch
the object store or the metadata store, so a hostile file can only take down its own worker.

Validation and rendering share their arithmetic (:func:`render_plan`), so a page validation
accepts is a page the later stages can render within the same pixel limit: page boxes are
measured with the PDF ``UserUnit`` (PDFium ignores it), at the highest DPI any stage renders
(``limits.max_render_dpi``).
Every verdict depends only on the document itself: PDFium's per-process last error is reset
before each load (:func:`open_pdf`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

import filetype
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageOps
from pypdf import PdfReader

from mlops.models import EXTENSIONS, DocumentFormat, QuarantineReason, ValidationOutcome
from mlops.workers import Rejected, failure_of

MIME_FORMATS = {
    "application/pdf": DocumentFormat.PDF,
    "image/jpeg": DocumentFormat.JPEG,
    "image/png": DocumentFormat.PNG,
    "image/tiff": DocumentFormat.TIFF,
}
POINTS_PER_INCH = 72.0
PASSWORD_ERRORS = (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY)


@dataclass(frozen=True)
class InspectJob:
    sha256: str
    filename: str
    data: bytes
    max_pages: int
    max_image_pixels: int
    render_dpi: int  # limits.max_render_dpi: no later stage renders a PDF page at more


@dataclass
class Page:
    index: int
    image: Image.Image
    source_dpi: float | None
    text: str


@dataclass(frozen=True)
class RenderPlan:
    """How a PDF page renders at a DPI: PDFium's scale (pixels per PDF unit) and the size."""

    scale: float
    width_px: int
    height_px: int
    source_dpi: float | None  # resolution of the page's largest image; None without images
    image_sizes: list[tuple[int, int]]  # pixel size of every image the page embeds


class UntrustedPdf(pdfium.PdfDocument):
    """A PDFium document whose pages carry their PDF ``UserUnit`` as ``page.user_unit``."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.user_units = _user_units(data, len(self))

    def get_page(self, index: int) -> pdfium.PdfPage:
        page = super().get_page(index)
        page.user_unit = self.user_units[index]
        return page


def sniff_format(data: bytes) -> DocumentFormat | None:
    kind = filetype.guess(data[:8192])
    return MIME_FORMATS.get(kind.mime) if kind else None


def inspect_document(job: InspectJob) -> ValidationOutcome:
    """Decide whether a document is safe and readable; bad input becomes a quarantine reason.

    Any exception the parsers raise is a verdict on the document, never a crash (see
    :func:`mlops.workers.failure_of`).
    """
    try:
        document_format = _check_format(job)
        pages = _count_pages(job, document_format)
    except Exception as error:  # noqa: BLE001 - any parser error on untrusted bytes is a verdict
        failure = failure_of(error)
        return ValidationOutcome(
            sha256=job.sha256, accepted=False, quarantine_reason=failure.reason, detail=failure.detail
        )
    return ValidationOutcome(sha256=job.sha256, accepted=True, format=document_format, pages=pages)


def _check_format(job: InspectJob) -> DocumentFormat:
    if not job.data:
        raise Rejected(QuarantineReason.EMPTY_FILE, "the file has zero bytes")
    extension = PurePosixPath(job.filename).suffix.lower()
    content_format = sniff_format(job.data)
    if content_format is None:
        raise Rejected(
            QuarantineReason.UNSUPPORTED_FORMAT,
            f"content is not PDF, JPEG, PNG or TIFF (extension {extension or 'none'!r})",
        )
    if EXTENSIONS.get(extension) != content_format:
        raise Rejected(
            QuarantineReason.EXTENSION_MISMATCH,
            f"content is {content_format.value} but the extension is {extension or 'none'!r}",
        )
    return content_format


def _count_pages(job: InspectJob, document_format: DocumentFormat) -> int:
    if document_format is DocumentFormat.PDF:
        return _check_pdf(job)
    return _check_image(job)


def open_pdf(data: bytes) -> UntrustedPdf:
    """Open a PDF with an empty password (owner-restricted PDFs open in every viewer, and here).

    PDFium reports errors through a per-process "last error" that some failed loads leave
    untouched, so a corrupt PDF opened after a password-protected one would be called encrypted.
    A load that is bound to fail (zero bytes) first sets a known error, so the reason read
    afterwards is this document's own.
    """
    pdfium_c.FPDF_LoadMemDocument(b"", 0, None)
    try:
        return UntrustedPdf(data)
    except pdfium.PdfiumError as error:
        if error.err_code in PASSWORD_ERRORS:
            raise Rejected(QuarantineReason.ENCRYPTED, "the PDF is password-protected") from None
        raise Rejected(QuarantineReason.CORRUPT, f"PDFium cannot open the PDF: {error}") from None


def _check_pdf(job: InspectJob) -> int:
    with open_pdf(job.data) as pdf:
        if b"%%EOF" not in job.data[-2048:]:
            raise Rejected(QuarantineReason.CORRUPT, "the PDF is truncated (no %%EOF trailer)")
        page_count = len(pdf)
        if page_count > job.max_pages:
            raise Rejected(QuarantineReason.TOO_MANY_PAGES, f"{page_count} pages, limit {job.max_pages}")
        for index in range(page_count):
            try:
                page = pdf[index]
                page.get_textpage().close()
            except pdfium.PdfiumError as error:
                raise Rejected(QuarantineReason.CORRUPT, f"page {index + 1} cannot be read: {error}") from None
            _check_page_size(page, index, job)
            page.close()
    return page_count


def _check_page_size(page: pdfium.PdfPage, index: int, job: InspectJob) -> None:
    width, height = page.get_size()
    if not (0 < width < math.inf and 0 < height < math.inf):
        raise Rejected(QuarantineReason.CORRUPT, f"page {index + 1} has an empty or invalid page box")
    plan = render_plan(page, job.render_dpi)
    sizes = [(plan.width_px, plan.height_px, f"renders at {job.render_dpi} DPI (UserUnit {page.user_unit:g}) to")]
    sizes += [(image_width, image_height, "embeds an image of") for image_width, image_height in plan.image_sizes]
    for size_width, size_height, what in sizes:
        if size_width * size_height > job.max_image_pixels:
            raise Rejected(
                QuarantineReason.DECOMPRESSION_BOMB,
                f"page {index + 1} {what} {size_width:,}x{size_height:,} pixels, limit {job.max_image_pixels:,}",
            )


def _user_units(data: bytes, pages: int) -> list[float]:
    """Each page's PDF ``UserUnit`` (the size of a PDF unit in points): 1.0 where it is absent,
    not a positive number, or pypdf cannot read the file. The entry can only hide in an object
    stream when it is not in the raw bytes, so most PDFs are never parsed a second time."""
    units = [1.0] * pages
    if b"/UserUnit" not in data and b"/ObjStm" not in data:
        return units
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            reader.decrypt("")
        for index, page in enumerate(reader.pages[:pages]):
            unit = float(page.get("/UserUnit", 1.0))
            units[index] = unit if 0 < unit < math.inf else 1.0
    except Exception:  # noqa: BLE001, S110 - PDFium read the file; without pypdf the unit stays 1.0
        pass
    return units


def _check_image(job: InspectJob) -> int:
    try:
        with Image.open(io.BytesIO(job.data)) as image:
            frames = getattr(image, "n_frames", 1)
            if frames > job.max_pages:
                raise Rejected(QuarantineReason.TOO_MANY_PAGES, f"{frames} pages, limit {job.max_pages}")
            for index in range(frames):
                image.seek(index)
                width, height = image.size
                if width * height > job.max_image_pixels:
                    raise Rejected(
                        QuarantineReason.DECOMPRESSION_BOMB,
                        f"page {index + 1} declares {width}x{height} pixels, limit {job.max_image_pixels:,}",
                    )
                image.getexif()  # malformed EXIF fails here, not when later stages turn the page upright
                image.load()
    except Image.DecompressionBombError as error:
        raise Rejected(QuarantineReason.DECOMPRESSION_BOMB, str(error)) from None
    return frames


def iter_pages(
    data: bytes, document_format: DocumentFormat, dpi: int, *, text_page_dpi: int | None = None, text_min_chars: int = 1
) -> Iterator[Page]:
    """Grayscale page images at about ``dpi`` (scans are never upsampled), upright (EXIF
    orientation applied), with any text layer. PDF pages with at least ``text_min_chars``
    characters of text layer render at ``text_page_dpi`` instead when it is given: their pixels
    only feed a perceptual hash, and a small render is a fraction of the work."""
    if document_format is DocumentFormat.PDF:
        yield from _pdf_pages(data, dpi, text_page_dpi or dpi, text_min_chars)
    else:
        yield from _image_pages(data, dpi)


def _pdf_pages(data: bytes, dpi: int, text_page_dpi: int, text_min_chars: int) -> Iterator[Page]:
    with open_pdf(data) as pdf:
        for index in range(len(pdf)):
            page = pdf[index]
            text = page.get_textpage().get_text_bounded()
            image, source_dpi = render_pdf_page(page, text_page_dpi if len(text.strip()) >= text_min_chars else dpi)
            page.close()
            yield Page(index=index, image=image, source_dpi=source_dpi, text=text)


def render_plan(page: pdfium.PdfPage, dpi: int) -> RenderPlan:
    """A render at ``dpi``, or at the resolution of the page's largest image if that is lower
    (a 150-DPI scan is never upsampled), with the page's ``UserUnit`` (set by :func:`open_pdf`)."""
    width_pt, height_pt = page.get_size()
    user_unit = getattr(page, "user_unit", 1.0)
    image_sizes = [obj.get_px_size() for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,))]
    width_inches = width_pt * user_unit / POINTS_PER_INCH
    source_dpi = max(width for width, _ in image_sizes) / width_inches if image_sizes else None
    scale = min(dpi, source_dpi or dpi) * user_unit / POINTS_PER_INCH
    return RenderPlan(scale, math.ceil(width_pt * scale), math.ceil(height_pt * scale), source_dpi, image_sizes)


def render_pdf_page(page: pdfium.PdfPage, dpi: int) -> tuple[Image.Image, float | None]:
    """A grayscale render planned by :func:`render_plan`, and the page's image resolution."""
    plan = render_plan(page, dpi)
    return page.render(scale=plan.scale, grayscale=True).to_pil().convert("L"), plan.source_dpi


def _image_pages(data: bytes, dpi: int) -> Iterator[Page]:
    with Image.open(io.BytesIO(data)) as image:
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            source_dpi = float(image.info["dpi"][0]) if image.info.get("dpi") else None
            page = ImageOps.exif_transpose(image).convert("L")
            if source_dpi and source_dpi > dpi:
                ratio = dpi / source_dpi
                page = page.resize((round(page.width * ratio), round(page.height * ratio)), Image.LANCZOS)
            yield Page(index=index, image=page, source_dpi=source_dpi, text="")
