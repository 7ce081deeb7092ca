"""Tesseract's page images hold borrower data: they go to a temp directory only this user can
open, and one left by a killed worker is removed by the next."""

from __future__ import annotations

import os
import stat
import tempfile

from PIL import Image, ImageDraw

from mlops.extraction import ocr


def test_ocr_writes_its_page_images_only_where_other_users_cannot_look_and_stale_ones_go(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(ocr, "_private_temp", None)
    stale = tmp_path / f"{ocr.PRIVATE_TEMP_PREFIX}999999999-x"  # a worker killed mid-page
    stale.mkdir()
    (stale / "tess_abc_input.PNG").write_bytes(b"Borrower Jane Doe")
    page = Image.new("L", (600, 120), 255)
    ImageDraw.Draw(page).text((10, 40), "Borrower Jane Doe", fill=0)

    ocr.ocr_page(page, 0, dpi=150)

    private = tempfile.gettempdir()
    assert os.path.dirname(private) == str(tmp_path)
    assert os.path.basename(private).startswith(f"{ocr.PRIVATE_TEMP_PREFIX}{os.getpid()}-")
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o700
    assert os.listdir(private) == []  # pytesseract cleaned up after itself
    assert not stale.exists()
