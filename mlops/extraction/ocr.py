"""Tesseract OCR for one page image.

Tesseract runs as a subprocess (through pytesseract). It is pinned to one thread: the platform
runs one OCR process per core, and OpenMP threads on top of that make a 2-core machine 3-7x
slower (FIELD_NOTES.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytesseract
from PIL import Image

from mlops.errors import DependencyMissing

DEFAULT_TESSERACT_CMD = "tesseract"
INSTALL_HINT = (
    "install it with `apt-get install tesseract-ocr tesseract-ocr-eng` (or `make demo`), "
    "or set MLOPS_EXTRACT__TESSERACT_CMD to the tesseract executable"
)
# One column of text of variable sizes: the forms are "Label: value" lines and prose, plus a
# value box beside the fields on some. On a 40-document corpus psm 4 read every labelled field;
# psm 6 (one uniform block) merged the box into the field lines and lost 2 of 243.
DEFAULT_PSM = 4
COLUMN_GAP = 2.5
"""A horizontal gap wider than this many word heights splits an OCR line in two: a value box
printed beside a ``Label: value`` line must not be read as the end of that value."""


def ensure_tesseract(cmd: str | None = None) -> str:
    """Return the version line of the Tesseract at ``cmd`` (default: ``tesseract`` on PATH).

    Called before a run starts OCR work, so a missing install fails once with the fix instead
    of once per document inside the workers.
    """
    program = cmd or DEFAULT_TESSERACT_CMD
    if shutil.which(program) is None:
        raise DependencyMissing(f"Tesseract OCR is not installed (no executable {program!r}): {INSTALL_HINT}")
    try:
        completed = subprocess.run(
            [program, "--version"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise DependencyMissing(
            f"Tesseract OCR at {program!r} does not run ({error}): {INSTALL_HINT}"
        ) from None
    lines = (completed.stdout or completed.stderr).strip().splitlines()
    return lines[0] if lines else "tesseract (unknown version)"


def ocr_page(
    image: Image.Image,
    lang: str = "eng",
    psm: int | None = None,
    *,
    dpi: int | None = None,
    cmd: str | None = None,
) -> tuple[str, float]:
    """OCR one page: (text, mean word confidence in [0, 1]).

    One ``image_to_data`` call gives both the words and their confidences; the text is rebuilt
    line by line from the words so both come from the same recognition pass; a line is split
    at a wide horizontal gap (see COLUMN_GAP). ``dpi`` tells
    Tesseract the true resolution when the image carries none (it would otherwise guess 70).
    """
    os.environ["OMP_THREAD_LIMIT"] = "1"
    pytesseract.pytesseract.tesseract_cmd = cmd or DEFAULT_TESSERACT_CMD
    config = f"--psm {psm or DEFAULT_PSM}" + (f" --dpi {dpi}" if dpi else "")
    try:
        data = pytesseract.image_to_data(image, lang=lang, config=config, output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractNotFoundError:
        raise DependencyMissing(f"Tesseract OCR is not installed: {INSTALL_HINT}") from None
    lines: dict[tuple[int, ...], list[str]] = {}
    confidences: list[float] = []
    previous: tuple[tuple[int, int, int], int, int] | None = None
    segment = 0
    for index, word in enumerate(data["text"]):
        word = word.strip()
        if not word:
            continue
        key = (data["block_num"][index], data["par_num"][index], data["line_num"][index])
        left, width, height = data["left"][index], data["width"][index], data["height"][index]
        if (
            previous is not None
            and previous[0] == key
            and left - previous[1] > COLUMN_GAP * max(height, previous[2])
        ):
            segment += 1
        previous = (key, left + width, height)
        lines.setdefault((*key, segment), []).append(word)
        if float(data["conf"][index]) >= 0:
            confidences.append(float(data["conf"][index]) / 100)
    text = "\n".join(" ".join(words) for words in lines.values())
    confidence = sum(confidences) / len(confidences) if confidences else 0.0
    return text, confidence
