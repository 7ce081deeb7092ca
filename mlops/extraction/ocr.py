"""Tesseract OCR for one page image.

Tesseract runs as a subprocess (through pytesseract). It is pinned to one thread: the platform
runs one OCR process per core, and OpenMP threads on top of that make a 2-core machine 3-7x
slower (FIELD_NOTES.md).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytesseract
from PIL import Image

from mlops.errors import DependencyMissing
from mlops.extraction.layout import PageLayout, ocr_layout

DEFAULT_TESSERACT_CMD = "tesseract"
INSTALL_HINT = (
    "install it with `apt-get install tesseract-ocr tesseract-ocr-eng` (or `make demo`), "
    "or set MLOPS_EXTRACT__TESSERACT_CMD to the tesseract executable"
)
# One column of text of variable sizes: the forms are "Label: value" lines and prose, plus a
# value box beside the fields on some. On a 40-document corpus psm 4 read every labelled field;
# psm 6 (one uniform block) merged the box into the field lines and lost 2 of 243.
DEFAULT_PSM = 4
PRIVATE_TEMP_PREFIX = "mlops-ocr-"
_private_temp: tuple[int, str] | None = None  # (pid, directory) of this process


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
    index: int,
    lang: str = "eng",
    psm: int | None = None,
    *,
    dpi: int | None = None,
    cmd: str | None = None,
) -> PageLayout:
    """OCR one page into words with boxes and confidences (one ``image_to_data`` call).

    ``dpi`` tells Tesseract the true resolution when the image carries none (it would otherwise
    guess 70).
    """
    os.environ["OMP_THREAD_LIMIT"] = "1"
    use_private_temp_dir()
    pytesseract.pytesseract.tesseract_cmd = cmd or DEFAULT_TESSERACT_CMD
    config = f"--psm {psm or DEFAULT_PSM}" + (f" --dpi {dpi}" if dpi else "")
    try:
        data = pytesseract.image_to_data(image, lang=lang, config=config, output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractNotFoundError:
        raise DependencyMissing(f"Tesseract OCR is not installed: {INSTALL_HINT}") from None
    return ocr_layout(data, image.width, image.height, index)


def use_private_temp_dir() -> str:
    """Point this process's temporary files at a directory only its user can open (mode 0700).

    pytesseract writes each page image and Tesseract's output (borrower names, account numbers)
    to the temp directory with the umask's permissions; a worker killed mid-page leaves them
    behind. In a private directory per process nobody else can read them, and the next process
    removes the directories of processes that are gone."""
    global _private_temp
    if _private_temp is None or _private_temp[0] != os.getpid():
        system = Path(tempfile.gettempdir() if _private_temp is None else Path(_private_temp[1]).parent)
        for stale in system.glob(f"{PRIVATE_TEMP_PREFIX}*"):
            pid = stale.name.removeprefix(PRIVATE_TEMP_PREFIX).split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        directory = tempfile.mkdtemp(prefix=f"{PRIVATE_TEMP_PREFIX}{os.getpid()}-", dir=system)
        atexit.register(shutil.rmtree, directory, True)
        _private_temp = (os.getpid(), directory)
    tempfile.tempdir = _private_temp[1]
    return _private_temp[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
