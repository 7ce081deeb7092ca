"""Pages as words with geometry: one model for the PDF text layer and for OCR.

Everything that reads fields reads a ``PageLayout``, never a raw string, so a text PDF and a
scan of it go through the same field logic. Coordinates are fractions of the page width (for
both axes, so distances mean the same in x and y) measured from the top-left corner; a word's
height is its font size in the same unit, whatever the DPI of the scan.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

_WORD = re.compile(r"[^\s\ufffe\x00]+")
LINE_OVERLAP = 0.5
"""Two words share a line when their vertical centres are closer than this share of their height."""


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    confidence: float = 1.0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def y_centre(self) -> float:
        return (self.y0 + self.y1) / 2


@dataclass(slots=True)
class Line:
    """Words left to right; ``starts[i]`` is where word i begins in ``text`` (words joined by one
    space). Its geometry is computed once: the field logic asks for it thousands of times a page."""

    words: list[Word]
    text: str = ""
    starts: list[int] = field(default_factory=list)
    y0: float = 0.0
    y1: float = 0.0
    height: float = 0.0  # the median word height: the line's font size

    def __post_init__(self) -> None:
        self.words.sort(key=lambda word: word.x0)
        offset = 0
        for word in self.words:
            self.starts.append(offset)
            offset += len(word.text) + 1
        self.text = " ".join(word.text for word in self.words)
        self.y0 = min(word.y0 for word in self.words)
        self.y1 = max(word.y1 for word in self.words)
        self.height = sorted(word.height for word in self.words)[len(self.words) // 2]

    def word_at(self, offset: int) -> int:
        """The index of the word holding character ``offset`` of ``text``."""
        index = 0
        for number, start in enumerate(self.starts):
            if start > offset:
                break
            index = number
        return index


@dataclass(slots=True)
class PageLayout:
    index: int
    source: str  # text_layer | ocr
    lines: list[Line]
    aspect: float = 1.294  # height / width

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    @property
    def confidence(self) -> float:
        confidences = [word.confidence for line in self.lines for word in line.words]
        return sum(confidences) / len(confidences) if confidences else 0.0


def group_lines(words: Iterable[Word]) -> list[Line]:
    """Words grouped into lines by vertical overlap, top to bottom."""
    lines: list[list[Word]] = []
    centre_sum = 0.0
    for word in sorted(words, key=lambda w: (w.y_centre, w.x0)):
        centre = word.y_centre
        if lines and abs(centre - centre_sum / len(lines[-1])) < LINE_OVERLAP * word.height:
            lines[-1].append(word)
            centre_sum += centre
        else:
            lines.append([word])
            centre_sum = centre
    return [Line(line_words) for line_words in lines]


def text_layer_layout(page: pdfium.PdfPage, index: int) -> PageLayout:
    """Words of a PDF page's text layer, from PDFium's text and the boxes of each word's first
    and last character (two calls a word, not one a character: a page costs ~1 ms)."""
    width, height = page.get_size()
    textpage = page.get_textpage()
    try:
        count = pdfium_c.FPDFText_CountChars(textpage.raw)
        if count <= 0:
            return PageLayout(index, "text_layer", [], height / width)
        buffer = ctypes.create_string_buffer((count + 1) * 2)
        pdfium_c.FPDFText_GetText(textpage.raw, 0, count, ctypes.cast(buffer, ctypes.POINTER(ctypes.c_ushort)))
        text = buffer.raw[: count * 2].decode("utf-16-le", errors="replace")
        words = [
            _text_layer_word(textpage.raw, text, start, end, width, height)
            for start, end in _word_spans(text)
        ]
    finally:
        textpage.close()
    return PageLayout(index, "text_layer", group_lines(w for w in words if w), height / width)


def _word_spans(text: str) -> list[tuple[int, int]]:
    return [match.span() for match in _WORD.finditer(text)]


def _text_layer_word(raw_textpage, text: str, start: int, end: int, width: float, height: float) -> Word | None:
    first = pdfium_c.FS_RECTF()
    last = pdfium_c.FS_RECTF()
    if not (
        pdfium_c.FPDFText_GetLooseCharBox(raw_textpage, start, first)
        and pdfium_c.FPDFText_GetLooseCharBox(raw_textpage, end - 1, last)
    ):
        return None
    top = max(first.top, last.top)
    bottom = min(first.bottom, last.bottom)
    return Word(
        text[start:end],
        first.left / width,
        (height - top) / width,
        last.right / width,
        (height - bottom) / width,
    )


def ocr_layout(data: Mapping[str, Sequence], image_width: int, image_height: int, index: int) -> PageLayout:
    """Words of a Tesseract ``image_to_data`` result (confidence 0-100 scaled to 0-1)."""
    words = []
    for number, text in enumerate(data["text"]):
        text = str(text).strip()
        confidence = float(data["conf"][number])
        if not text or confidence < 0:
            continue
        left, top = data["left"][number], data["top"][number]
        words.append(
            Word(
                text,
                left / image_width,
                top / image_width,
                (left + data["width"][number]) / image_width,
                (top + data["height"][number]) / image_width,
                confidence / 100,
            )
        )
    return PageLayout(index, "ocr", group_lines(words), image_height / image_width)
