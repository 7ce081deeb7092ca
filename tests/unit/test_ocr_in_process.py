"""OCR runs inside the worker: page images and recognised borrower data never touch the disk,
and the engine (its language model) is created once per process, not once per page."""

from __future__ import annotations

import tempfile

from PIL import Image, ImageDraw, ImageFont

from mlops.extraction import ocr


def page_with(text: str) -> Image.Image:
    page = Image.new("L", (900, 160), 255)
    ImageDraw.Draw(page).text((20, 50), text, fill=0, font=ImageFont.load_default(size=40))
    return page


def test_ocr_reads_the_page_without_temporary_files_and_keeps_one_engine(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    first = ocr.ocr_page(page_with("Borrower Jane Doe"), 0, dpi=150)
    second = ocr.ocr_page(page_with("Account 123456789"), 1, dpi=150)

    assert "Borrower Jane Doe" in first.text and "123456789" in second.text
    assert second.index == 1 and all(0 < word.confidence <= 1 for line in second.lines for word in line.words)
    assert list(tmp_path.iterdir()) == []
    assert ocr._engine.cache_info().currsize == 1
