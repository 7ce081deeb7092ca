"""What preprocess_documents measures on each page, in the sandboxed workers (whose server
preloads this module: it imports only what page work needs, no store or dataframe libraries).

Per page: pixel size, source DPI, text-layer size and, for scanned pages (pages without a text
layer), a clarity score in [0, 1]. Plain Laplacian variance rewards noise (it roughly doubles on
a noisy scan), so sharpness is measured after a 3x3 median filter and the score is discounted by
a robust noise estimate (MAD of the residual). Per document: a perceptual hash of page 1 and a
fingerprint of all pages, used to find re-scanned near-duplicates of documents seen in this or
any earlier run. Scanned pages are deskewed, and every page is cropped to its ink, before
hashing: a 2-degree rotation alone moves a plain pHash further than the distance between two
different letters printed from one template.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image
from scipy import ndimage

from mlops.documents import iter_pages
from mlops.models import DocumentFormat, PageStats, PreprocessRecord

SHARPNESS_HALF_POINT = 0.02  # Laplacian variance (0-1 grey scale) that scores 0.5
NOISE_HALF_POINT = 8.0  # noise sigma (grey levels) that halves the score
PHASH_SIZE = 16  # 256-bit hashes: 64-bit ones put different letters of one template too close
DESKEW_ANGLES = np.arange(-3.0, 3.01, 0.25)
INK_LEVEL = 128
HASHED_PAGE_SIZE = (PHASH_SIZE * 4, PHASH_SIZE * 4)  # what imagehash.phash reduces a page to
TEXT_PAGE_HASH_DPI = 50


@dataclass(frozen=True)
class MeasureJob:
    sha256: str
    format: DocumentFormat
    data: bytes
    render_dpi: int
    text_layer_min_chars: int


@dataclass(frozen=True)
class Measurement:
    pages: list[PageStats]
    page_hashes: list[str]


def _median_of_3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


def median_3x3(gray: np.ndarray) -> np.ndarray:
    """Pillow's ``MedianFilter(3)`` (edges replicated), 50x faster: the median of nine is the
    median of (largest row minimum, median row median, smallest row maximum) of its three rows."""
    padded = np.pad(gray, 1, mode="edge")
    left, centre, right = padded[:, :-2], padded[:, 1:-1], padded[:, 2:]
    low = np.minimum(np.minimum(left, centre), right)
    high = np.maximum(np.maximum(left, centre), right)
    middle = _median_of_3(left, centre, right)
    return _median_of_3(
        np.maximum(np.maximum(low[:-2], low[1:-1]), low[2:]),
        _median_of_3(middle[:-2], middle[1:-1], middle[2:]),
        np.minimum(np.minimum(high[:-2], high[1:-1]), high[2:]),
    )


def integer_median(values: np.ndarray, offset: int = 0) -> float:
    """``np.median`` of integers that are >= -``offset``, from their counts: a page's worth of
    grey levels in a few milliseconds instead of a float partition."""
    at_most = np.cumsum(np.bincount((values + offset).ravel()))
    middle = np.searchsorted(at_most, [(at_most[-1] - 1) // 2, at_most[-1] // 2], side="right")
    return float(middle.mean()) - offset


def page_quality(gray: np.ndarray) -> tuple[float, float, float]:
    """(sharpness, noise, clarity) of a grayscale page; clarity is 0-1 and never rewards noise."""
    gray = gray.astype(np.uint8)
    denoised = median_3x3(gray)
    residual = gray.astype(np.int16) - denoised.astype(np.int16)
    # twice the deviations, so a half-integer median of the residual keeps them integers
    twice_deviation = np.abs(2 * residual - round(2 * integer_median(residual, 255)))
    noise = float(1.4826 * integer_median(twice_deviation) / 2)
    sharpness = float(ndimage.laplace(denoised.astype(np.float32) / np.float32(255.0)).var())
    sharp_score = sharpness / (sharpness + SHARPNESS_HALF_POINT)
    clarity = sharp_score / (1.0 + noise / NOISE_HALF_POINT)
    return sharpness, noise, round(clarity, 4)


def normalise_for_hash(image: Image.Image, upright: bool = False) -> Image.Image:
    """Deskew (unless the page is born ``upright``), crop to the ink's bounding box and reduce to
    the hash's input size in one pass."""
    ink = np.asarray(image) < INK_LEVEL
    if not ink.any():
        return image
    if not upright:
        image = image.rotate(skew_angle(image), fillcolor=255, resample=Image.BILINEAR)
        ink = np.asarray(image) < INK_LEVEL
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    cropped = image.crop((cols[0], rows[0], cols[-1] + 1, rows[-1] + 1))
    return cropped.resize(HASHED_PAGE_SIZE, Image.Resampling.LANCZOS, reducing_gap=3.0)


def skew_angle(image: Image.Image) -> float:
    """The angle that makes the row sums of the half-size page's ink most uneven. Each candidate
    rotation projects the ink pixels' coordinates onto rows, the same projection as rotating the
    whole page with nearest-neighbour sampling, without touching the blank pixels."""
    half = np.asarray(image.resize((max(1, image.width // 2), max(1, image.height // 2)))) < INK_LEVEL
    height, width = half.shape
    ys, xs = np.nonzero(half)
    ys, xs = ys - (height - 1) / 2, xs - (width - 1) / 2

    def row_unevenness(angle: float) -> float:
        theta = np.deg2rad(angle)
        rows = np.rint(ys * np.cos(theta) - xs * np.sin(theta) + (height - 1) / 2).astype(np.int64)
        return float(np.bincount(rows[(rows >= 0) & (rows < height)], minlength=height).var())

    return float(max(DESKEW_ANGLES, key=row_unevenness))


def measure(job: MeasureJob) -> Measurement:
    """Page statistics and hashes. A page with a text layer is born digital: it renders small,
    only for its hash, with no deskew and no clarity (there is no scan to judge)."""
    pages, hashes = [], []
    rendered = iter_pages(
        job.data, job.format, job.render_dpi, text_page_dpi=TEXT_PAGE_HASH_DPI, text_min_chars=job.text_layer_min_chars
    )
    for page in rendered:
        text_chars = len(page.text.strip())
        born_digital = text_chars >= job.text_layer_min_chars
        sharpness, noise, clarity = (None, None, None) if born_digital else page_quality(np.asarray(page.image))
        pages.append(
            PageStats(
                sha256=job.sha256,
                page_index=page.index,
                width_px=page.image.width,
                height_px=page.image.height,
                dpi=round(page.source_dpi, 1) if page.source_dpi else None,
                sharpness=sharpness,
                noise=noise,
                clarity=clarity,
                text_chars=text_chars,
            )
        )
        hashes.append(str(imagehash.phash(normalise_for_hash(page.image, upright=born_digital), hash_size=PHASH_SIZE)))
    return Measurement(pages=pages, page_hashes=hashes)


def measure_document(job: MeasureJob) -> tuple[PreprocessRecord, list[PageStats]]:
    """The worker's whole job: nothing computed from a document's bytes runs outside the sandbox."""
    measurement = measure(job)
    return summarise(job.format, measurement, job.text_layer_min_chars), measurement.pages


def summarise(doc_format: DocumentFormat, measurement: Measurement, text_layer_min_chars: int) -> PreprocessRecord:
    pages = measurement.pages
    dpis = [page.dpi for page in pages if page.dpi]
    clarities = [page.clarity for page in pages if page.clarity is not None]
    return PreprocessRecord(
        sha256=pages[0].sha256,
        format=doc_format,
        pages=len(pages),
        has_text_layer=sum(page.text_chars for page in pages) >= text_layer_min_chars,
        clarity=round(float(np.mean(clarities)), 4) if clarities else None,
        min_dpi=min(dpis) if dpis else None,
        phash=measurement.page_hashes[0],
        fingerprint=hashlib.sha256("".join(measurement.page_hashes).encode()).hexdigest()[:32],
    )
