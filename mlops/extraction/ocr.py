"""Tesseract OCR for one page image, in-process through Tesseract's C API (tesserocr).

Each process creates one engine per language and page-segmentation mode and keeps it, so the
language model loads once per worker, not once per page, and page images and recognised text
(borrower names, account numbers) never pass through temporary files. The engine is pinned to
one thread: the platform runs one OCR process per core, and OpenMP threads on top of that make
a 2-core machine 3-7x slower (FIELD_NOTES.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache

from PIL import Image

from mlops.errors import DependencyMissing
from mlops.extraction.layout import PageLayout, ocr_layout

DEFAULT_TESSERACT_CMD = "tesseract"
INSTALL_HINT = (
    "install it with `apt-get install tesseract-ocr tesseract-ocr-eng` (or `make demo`), "
    "set TESSDATA_PREFIX to the directory holding eng.traineddata, "
    "or set MLOPS_EXTRACT__TESSERACT_CMD to the tesseract executable that knows it"
)
# One column of text of variable sizes: the forms are "Label: value" lines and prose, plus a
# value box beside the fields on some. On a 40-document corpus psm 4 read every labelled field;
# psm 6 (one uniform block) merged the box into the field lines and lost 2 of 243.
DEFAULT_PSM = 4
TSV_COLUMNS = ("level", "page_num", "block_num", "par_num", "line_num", "word_num",
               "left", "top", "width", "height", "conf", "text")  # fmt: skip


@cache
def tessdata_dir(cmd: str | None = None, lang: str = "eng") -> str:
    """The directory of Tesseract's language data: ``$TESSDATA_PREFIX``, else the one the
    ``tesseract`` command (``cmd``) lists its languages from."""
    directory = os.environ.get("TESSDATA_PREFIX")
    if not directory:
        program = cmd or DEFAULT_TESSERACT_CMD
        if shutil.which(program) is None:
            raise DependencyMissing(f"Tesseract OCR is not installed (no executable {program!r}): {INSTALL_HINT}")
        try:
            listed = subprocess.run([program, "--list-langs"], capture_output=True, text=True, timeout=30, check=True)
        except (OSError, subprocess.SubprocessError) as error:
            raise DependencyMissing(f"Tesseract OCR at {program!r} does not run ({error}): {INSTALL_HINT}") from None
        found = re.search(r'"(.+?)"', listed.stdout + listed.stderr)
        directory = found.group(1) if found else ""
    if not os.path.isfile(os.path.join(directory, f"{lang}.traineddata")):
        raise DependencyMissing(f"Tesseract has no {lang!r} language data in {directory!r}: {INSTALL_HINT}")
    return directory


def ensure_tesseract(cmd: str | None = None) -> str:
    """Return the OCR engine's version line once its language data is found.

    Called before a run starts OCR work, so a missing install fails once with the fix instead
    of once per document inside the workers.
    """
    tessdata_dir(cmd)
    return _tesserocr().tesseract_version().splitlines()[0]


def ocr_page(
    image: Image.Image,
    index: int,
    lang: str = "eng",
    psm: int | None = None,
    *,
    dpi: int | None = None,
    cmd: str | None = None,
) -> PageLayout:
    """OCR one page into words with boxes and confidences.

    ``dpi`` tells Tesseract the true resolution when the image carries none (it would otherwise
    guess 70).
    """
    engine = _engine(tessdata_dir(cmd, lang), lang, psm or DEFAULT_PSM)
    try:
        engine.SetImage(image)
        if dpi:
            engine.SetSourceResolution(dpi)
        rows = [line.split("\t") for line in (engine.GetTSVText(0) or "").splitlines()]
    finally:
        engine.Clear()
    data = {column: [row[number] if number < len(row) else "" for row in rows] for number, column in enumerate(TSV_COLUMNS)}
    for column in ("left", "top", "width", "height"):
        data[column] = [int(value) for value in data[column]]
    return ocr_layout(data, image.width, image.height, index)


@cache
def _engine(tessdata: str, lang: str, psm: int):
    os.environ["OMP_THREAD_LIMIT"] = "1"  # read by OpenMP when the engine first starts
    tesserocr = _tesserocr()
    return tesserocr.PyTessBaseAPI(path=tessdata.rstrip("/") + "/", lang=lang, psm=psm)


def _tesserocr():
    try:
        import tesserocr
    except ImportError as error:
        raise DependencyMissing(f"the tesserocr package does not load ({error}): pip install -r requirements.txt") from None
    return tesserocr
