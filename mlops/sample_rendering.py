"""Drawing and scanning primitives shared by the synthetic document families and the sample corpus.

A page is a tuple of DrawOps in PDF points from the top-left. The same ops become a text PDF
(fpdf2 core fonts) and, through PDFium, the page a scanner would see; the scan degradations
(skew, blur, noise, grey ink on grey paper, JPEG artifacts, bilevel TIFF) are applied here so
every family is degraded the same way and its row records how.
"""

from __future__ import annotations

import io
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np
import pypdfium2
from fpdf import FPDF
from fpdf.fonts import CORE_FONTS_CHARWIDTHS
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mlops.models import DocumentFormat

PAGE_SIZES = {"letter": (612.0, 792.0), "a4": (595.28, 841.89)}
SCAN_DPIS = (150, 200, 240, 300)
FIXED_CREATION_DATE = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)
RENDER_KINDS = ("text_pdf", "image_pdf", "png", "jpeg", "tiff")
KIND_EXTENSIONS = {"text_pdf": ".pdf", "image_pdf": ".pdf", "png": ".png", "jpeg": ".jpg", "tiff": ".tif"}
KIND_FORMATS = {
    "text_pdf": DocumentFormat.PDF,
    "image_pdf": DocumentFormat.PDF,
    "png": DocumentFormat.PNG,
    "jpeg": DocumentFormat.JPEG,
    "tiff": DocumentFormat.TIFF,
}
GRADES = {"clean": (3, 0.0, 0.3), "fair": (12, 0.6, 1.0), "poor": (20, 0.9, 2.0)}
"""Scan grade -> the most (noise sigma, blur in 300-DPI pixels, rotation in degrees) it gets."""
LOW_CONTRAST_INK = (60, 95)
LOW_CONTRAST_PAPER = (180, 215)
POOR_JPEG_QUALITY = (22, 40)
NOISE_PER_CONTRAST = 0.08
"""Sensor noise above ~0.1 of the ink/paper contrast makes Tesseract see thin Courier text as an
image and read nothing; the cap keeps every scan readable."""
NO_BREAK = "\u00a0"
"""Joins the words of a value inside prose so wrapping never splits it; printed as a space."""


@dataclass(frozen=True)
class DrawOp:
    """One thing on a page, in PDF points from the top-left (text at its baseline).

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
    font: str = "Helvetica"


def text_width(text: str, font: str, size: float, bold: bool = False) -> float:
    """Width in points of `text` set in an fpdf core font (what the PDF will really occupy)."""
    widths = CORE_FONTS_CHARWIDTHS[font.lower() + ("B" if bold else "")]
    return sum(widths.get(char, 600) for char in text.replace(NO_BREAK, " ")) * size / 1000


def wrap_text(text: str, width: float, font: str, size: float) -> list[str]:
    """Greedy word wrap by measured width; words joined by NO_BREAK stay on one line."""
    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if line and text_width(candidate, font, size) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


def outline(x: float, y: float, width: float, height: float, weight: float = 1.5) -> list[DrawOp]:
    """A rectangle's border as four filled bars (both renderers only fill)."""
    return [
        DrawOp("rect", x, y, width=width, height=weight),
        DrawOp("rect", x, y + height - weight, width=width, height=weight),
        DrawOp("rect", x, y, width=weight, height=height),
        DrawOp("rect", x + width - weight, y, width=weight, height=height),
    ]


def text_pdf(pages: tuple[tuple[DrawOp, ...], ...], page_size: str, title: str, author: str) -> bytes:
    pdf = FPDF(unit="pt", format=page_size)
    pdf.set_auto_page_break(False)
    pdf.set_creation_date(FIXED_CREATION_DATE)
    pdf.set_title(title)
    pdf.set_author(author)
    for ops in pages:
        pdf.add_page()
        for op in ops:
            if op.kind == "rect":
                pdf.set_fill_color(op.gray)
                pdf.rect(op.x, op.y, op.width, op.height, style="F")
            else:
                pdf.set_font(op.font, "B" if op.bold else "", op.size)
                pdf.set_text_color(op.gray)
                pdf.text(op.x, op.y, op.text.replace(NO_BREAK, " "))
    return bytes(pdf.output())


def print_pdf(pdf: bytes, dpi: int) -> list[Image.Image]:
    """Every page of a PDF rendered by PDFium on white paper, in grayscale."""
    document = pypdfium2.PdfDocument(pdf)
    try:
        return [page.render(scale=dpi / 72, grayscale=True).to_pil().convert("L") for page in document]
    finally:
        document.close()


@lru_cache(maxsize=64)
def _font(pixels: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=pixels)


def rasterize(ops: tuple[DrawOp, ...], dpi: int) -> Image.Image:
    """A clean grayscale Letter page drawn by Pillow (its own typeface, unlike print_pdf)."""
    scale = dpi / 72
    width, height = PAGE_SIZES["letter"]
    image = Image.new("L", (round(width * scale), round(height * scale)), 255)
    draw = ImageDraw.Draw(image)
    for op in ops:
        if op.kind == "rect":
            box = (op.x * scale, op.y * scale, (op.x + op.width) * scale, (op.y + op.height) * scale)
            draw.rectangle(box, fill=op.gray)
        else:
            stroke = max(1, round(scale / 3)) if op.bold else 0
            draw.text(
                (op.x * scale, op.y * scale),
                op.text,
                font=_font(round(op.size * scale)),
                fill=op.gray,
                anchor="ls",
                stroke_width=stroke,
                stroke_fill=op.gray,
            )
    return image


@dataclass(frozen=True)
class ScanQuality:
    """How a page was degraded. `ink`/`paper` are the grey levels black and white end up at."""

    grade: str
    noise: float
    blur: float
    rotation: float
    paper: int
    ink: int
    jpeg_quality: int
    mode: str

    def label(self) -> dict[str, object]:
        return {
            "grade": self.grade,
            "noise": self.noise,
            "blur": self.blur,
            "rotation": self.rotation,
            "mode": self.mode,
            "ink": self.ink,
            "paper": self.paper,
            "contrast": self.paper - self.ink,
            "jpeg_quality": self.jpeg_quality,
        }


def scan_quality(kind: str, rng: random.Random) -> ScanQuality:
    """Clean, fair or poor scan settings; even 'poor' stays readable by Tesseract.

    Poor scans are either low-contrast (grey ink on grey paper) or hard JPEG-compressed, and noise
    is capped relative to contrast (NOISE_PER_CONTRAST). TIFFs are half bilevel (CCITT Group 4,
    as document scanners write them) and half grayscale; some JPEGs are colour scans.
    """
    grade = rng.choice(tuple(GRADES))
    noise, blur, rotation = GRADES[grade]
    ink, paper = rng.randrange(0, 25), rng.randrange(236, 256)
    jpeg_quality = rng.randrange(70, 93)
    if grade == "fair":
        ink, paper, jpeg_quality = rng.randrange(20, 60), rng.randrange(215, 245), rng.randrange(50, 75)
    elif grade == "poor" and rng.random() < 0.5:
        ink, paper = rng.randrange(*LOW_CONTRAST_INK), rng.randrange(*LOW_CONTRAST_PAPER)
    elif grade == "poor":
        jpeg_quality = rng.randrange(*POOR_JPEG_QUALITY)
    mode = "L"
    if kind == "tiff" and rng.random() < 0.5:
        mode = "1"
    elif kind == "jpeg" and rng.random() < 0.4:
        mode = "RGB"
    noise = min(noise, NOISE_PER_CONTRAST * (paper - ink))
    return ScanQuality(
        grade=grade,
        noise=round(rng.uniform(noise / 3, noise), 1),
        blur=round(rng.uniform(blur / 2, blur), 2) if blur else 0.0,
        rotation=round(rng.uniform(-rotation, rotation), 2),
        paper=paper,
        ink=ink,
        jpeg_quality=jpeg_quality,
        mode=mode,
    )


def scan(image: Image.Image, quality: ScanQuality, noise_rng: np.random.Generator) -> Image.Image:
    """Make a clean white page look scanned: ink/paper levels, skew, optical blur (in 300-DPI
    pixels), sensor noise, colour mode."""
    span = quality.paper - quality.ink
    image = image.point([quality.ink + span * v // 255 for v in range(256)])
    if abs(quality.rotation) >= 0.05:
        image = image.rotate(quality.rotation, resample=Image.Resampling.BILINEAR, fillcolor=quality.paper)
    if quality.blur:
        image = image.filter(ImageFilter.GaussianBlur(quality.blur * max(image.width / 2550, 0.5)))
    if quality.noise:
        image = Image.fromarray(_add_noise(np.asarray(image), quality.noise, noise_rng))
    if quality.mode == "1":
        threshold = (quality.ink + quality.paper) // 2
        return image.point(lambda v: 255 if v > threshold else 0).convert("1")
    if quality.mode == "RGB":
        pixels = np.asarray(image, dtype=np.float32)[..., None] * np.array(
            [1.0, 0.98, 0.93], dtype=np.float32
        )
        return Image.fromarray(pixels.astype(np.uint8), "RGB")
    return image


def _add_noise(pixels: np.ndarray, sigma: float, noise_rng: np.random.Generator) -> np.ndarray:
    """Pixels plus zero-mean noise of standard deviation ~sigma: the sum of two uniform integer
    draws (a triangular distribution), close to Gaussian and ~3x faster to draw for a 300-DPI page."""
    half_width = max(1, round(sigma * 1.5**0.5))
    noisy = noise_rng.integers(-half_width, half_width + 1, size=pixels.shape, dtype=np.int16)
    noisy += noise_rng.integers(-half_width, half_width + 1, size=pixels.shape, dtype=np.int16)
    noisy += pixels
    return np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)


def stack(images: list[Image.Image]) -> Image.Image:
    """Pages one below the other in one image, as a phone scanner app exports a multi-page capture."""
    width = max(image.width for image in images)
    result = Image.new("L", (width, sum(image.height for image in images)), 255)
    top = 0
    for image in images:
        result.paste(image, (0, top))
        top += image.height
    return result


def encode_scan(images: list[Image.Image], kind: str, dpi: int, quality: ScanQuality, title: str) -> bytes:
    buffer = io.BytesIO()
    first, rest = images[0], images[1:]
    if kind == "png":
        first.save(buffer, "PNG", dpi=(dpi, dpi), compress_level=1)
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
