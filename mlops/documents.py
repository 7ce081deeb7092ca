"""Opening untrusted document bytes: format sniffing, safety checks and page rendering.

These functions run inside sandboxed worker processes (see mlops.workers); they never touch
the object store or the metadata store, so a hostile file can only take down its own worker.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

import filetype
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

from mlops.models import EXTENSIONS, DocumentFormat, QuarantineReason, ValidationOutcome

MIME_FORMATS = {
    "application/pdf": DocumentFormat.PDF,
    "image/jpeg": DocumentFormat.JPEG,
    "image/png": DocumentFormat.PNG,
    "image/tiff": DocumentFormat.TIFF,
}
POINTS_PER_INCH = 72.0


class Rejected(Exception):
    def __init__(self, reason: QuarantineReason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class InspectJob:
    sha256: str
    filename: str
    data: bytes
    max_pages: int
    max_image_pixels: int


@dataclass
class Page:
    index: int
    image: Image.Image
    source_dpi: float | None
    text: str


def sniff_format(data: bytes) -> DocumentFormat | None:
    kind = filetype.guess(data[:8192])
    return MIME_FORMATS.get(kind.mime) if kind else None


def inspect_document(job: InspectJob) -> ValidationOutcome:
    """Decide whether a document is safe and readable; bad input becomes a quarantine reason."""
    try:
        document_format = _check_format(job)
        pages = _count_pages(job, document_format)
    except Rejected as rejected:
        return ValidationOutcome(
            sha256=job.sha256, accepted=False, quarantine_reason=rejected.reason, detail=rejected.detail
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


def open_pdf(data: bytes) -> pdfium.PdfDocument:
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as error:
        if error.err_code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise Rejected(QuarantineReason.ENCRYPTED, "the PDF is password-protected") from None
        raise Rejected(QuarantineReason.CORRUPT, f"PDFium cannot open the PDF: {error}") from None
    return pdf


def _check_pdf(job: InspectJob) -> int:
    pdf = open_pdf(job.data)
    with pdf:
        if pdfium_c.FPDF_GetSecurityHandlerRevision(pdf.raw) != -1:
            raise Rejected(QuarantineReason.ENCRYPTED, "the PDF is encrypted (owner password set)")
        if b"%%EOF" not in job.data[-2048:]:
            raise Rejected(QuarantineReason.CORRUPT, "the PDF is truncated (no %%EOF trailer)")
        page_count = len(pdf)
        if page_count == 0:
            raise Rejected(QuarantineReason.CORRUPT, "the PDF has no pages")
        if page_count > job.max_pages:
            raise Rejected(QuarantineReason.TOO_MANY_PAGES, f"{page_count} pages, limit {job.max_pages}")
        for index in range(page_count):
            try:
                page = pdf[index]
                page.get_textpage().close()
                page.close()
            except pdfium.PdfiumError as error:
                raise Rejected(QuarantineReason.CORRUPT, f"page {index + 1} cannot be read: {error}") from None
    return page_count


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
                image.load()
    except Rejected:
        raise
    except Image.DecompressionBombError as error:
        raise Rejected(QuarantineReason.DECOMPRESSION_BOMB, str(error)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise Rejected(QuarantineReason.CORRUPT, f"the image cannot be decoded: {error}") from None
    return frames


def iter_pages(data: bytes, document_format: DocumentFormat, dpi: int) -> Iterator[Page]:
    """Grayscale page images at about ``dpi`` (scans are never upsampled), with any text layer."""
    if document_format is DocumentFormat.PDF:
        yield from _pdf_pages(data, dpi)
    else:
        yield from _image_pages(data, dpi)


def _pdf_pages(data: bytes, dpi: int) -> Iterator[Page]:
    with open_pdf(data) as pdf:
        for index in range(len(pdf)):
            page = pdf[index]
            text = page.get_textpage().get_text_bounded()
            image, source_dpi = render_pdf_page(page, dpi)
            page.close()
            yield Page(index=index, image=image, source_dpi=source_dpi, text=text)


def render_pdf_page(page: pdfium.PdfPage, dpi: int) -> tuple[Image.Image, float | None]:
    """A grayscale render at ``dpi``, or at the resolution of the page's largest image if that is
    lower (a 150-DPI scan is never upsampled), and that image resolution (None without images)."""
    width_pt = page.get_width()
    image_widths = [obj.get_px_size()[0] for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,))]
    source_dpi = max(image_widths) / (width_pt / POINTS_PER_INCH) if image_widths else None
    scale = min(dpi, source_dpi or dpi) / POINTS_PER_INCH
    return page.render(scale=scale, grayscale=True).to_pil().convert("L"), source_dpi


def _image_pages(data: bytes, dpi: int) -> Iterator[Page]:
    with Image.open(io.BytesIO(data)) as image:
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            source_dpi = float(image.info["dpi"][0]) if image.info.get("dpi") else None
            page = image.convert("L")
            if source_dpi and source_dpi > dpi:
                ratio = dpi / source_dpi
                page = page.resize((round(page.width * ratio), round(page.height * ratio)), Image.LANCZOS)
            yield Page(index=index, image=page, source_dpi=source_dpi, text="")
