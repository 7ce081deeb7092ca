"""A hostile corpus, generated: malformed and hostile documents of the kinds PDF.js, qpdf, pypdf,
Pillow and libpng keep in their own test suites, each with the verdict validation must reach.

Nothing here is a binary blob: every file is built from a few bytes of PDF syntax, Pillow or
pypdf, so each one says what it is.
"""

from __future__ import annotations

import io
import random
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image
from pypdf import PdfReader, PdfWriter

from mlops.sample_data import _png_bomb

LARGEST_ACCEPTED_SIDE = 5290  # 27.98 Mpx: just under the default limits.max_image_pixels


@dataclass(frozen=True)
class Hostile:
    data: bytes
    reason: str | None  # validation's verdict; None: accepted
    why: str


def pdf(*objects: bytes) -> bytes:
    """A PDF whose object N is ``objects[N - 1]`` (1 the catalog), with a correct xref table."""
    out, offsets = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def stream(data: bytes, entries: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n%s\nendstream" % (len(data), entries, data)


def one_page(media_box: bytes = b"0 0 612 792", page_entries: bytes = b"", resources: bytes = b"",
             text_at: bytes = b"72 700", content: bytes = b"", extra: tuple[bytes, ...] = (),
             title: str = "Sample") -> bytes:
    """A one-page PDF with a line of Helvetica text; ``extra`` objects are numbered from 6."""
    text = b"BT /F1 24 Tf %s Td (Student loan statement for %s) Tj ET" % (text_at, title.encode())
    return pdf(
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [%s] %s /Resources << /Font << /F1 5 0 R >> %s >> "
        b"/Contents 4 0 R >>" % (media_box, page_entries, resources),
        stream(content + text),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        *extra,
    )


def encrypted(data: bytes, user_password: str, algorithm: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="servicer-owner", algorithm=algorithm)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def image_bytes(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def sideways_jpeg() -> bytes:
    """Stored landscape (400x200) with EXIF orientation 6: upright it is a 200x400 portrait page."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return image_bytes(Image.new("L", (400, 200), 255), "JPEG", exif=exif, dpi=(100, 100))


def tiff_without_dimensions_on_page_2() -> bytes:
    """A two-page TIFF whose second IFD lost its ImageWidth tag: Pillow raises
    ``TypeError: Missing dimensions`` when it turns to page 2 (seen in fuzzed TIFFs)."""
    pages = [Image.new("L", (32, 32), 255), Image.new("L", (32, 32), 0)]
    data = bytearray(image_bytes(pages[0], "TIFF", save_all=True, append_images=pages[1:], dpi=(100, 100)))
    first_ifd = struct.unpack_from("<I", data, 4)[0]
    entries = struct.unpack_from("<H", data, first_ifd)[0]
    second_ifd = struct.unpack_from("<I", data, first_ifd + 2 + 12 * entries)[0]
    for index in range(struct.unpack_from("<H", data, second_ifd)[0]):
        at = second_ifd + 2 + 12 * index
        if struct.unpack_from("<H", data, at)[0] == 256:  # ImageWidth -> an unknown private tag
            struct.pack_into("<H", data, at, 65000)
    return bytes(data)


def fuzzed(data: bytes, seed: int) -> bytes:
    """A few random byte flips, cuts and insertions."""
    rng, out = random.Random(seed), bytearray(data)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(out))
        action = rng.random()
        if action < 0.5:
            out[at] = rng.randrange(256)
        elif action < 0.75:
            del out[at : at + rng.randint(1, 20)]
        else:
            out[at:at] = rng.randbytes(rng.randint(1, 10))
    return bytes(out)


def build() -> dict[str, Hostile]:
    """{file name: the file and validation's verdict}."""
    good = one_page()
    png = image_bytes(Image.new("L", (300, 400), 255), "PNG", dpi=(100, 100))
    image_bomb = stream(b"x\x9c" + bytes(64), b"/Type /XObject /Subtype /Image /Width 30000 /Height 30000 "
                        b"/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode")
    corpus: dict[str, Callable[[], Hostile]] = {
        "empty.pdf": lambda: Hostile(b"", "empty_file", "zero bytes"),
        "garbage.pdf": lambda: Hostile(b"%PDF-1.4\n" + random.Random(1).randbytes(4000), "corrupt", "PDF header, noise"),
        "truncated.pdf": lambda: Hostile(good[: len(good) // 2], "corrupt", "cut in the middle"),
        "broken-xref.pdf": lambda: Hostile(
            re.sub(rb"\d{10} 00000 n", b"0000000000 00000 n", good), None, "every xref offset 0: PDFium rebuilds it"
        ),
        "broken-page-tree.pdf": lambda: Hostile(
            good.replace(b"2 0 obj", b"210 obj"), "corrupt", "loads with no pages (PDFium sets no error of its own)"
        ),
        "password.pdf": lambda: Hostile(encrypted(good, "borrower", "AES-256"), "encrypted", "user password"),
        "owner-only-rc4.pdf": lambda: Hostile(encrypted(one_page(title="RC4"), "", "RC4-128"), None, "empty user password"),
        "owner-only-aes.pdf": lambda: Hostile(encrypted(good, "", "AES-256"), None, "empty user password"),
        "huge-mediabox.pdf": lambda: Hostile(
            one_page(b"0 0 612 2147483648"), "decompression_bomb", "page 2^31 points high"
        ),
        "userunit-bomb.pdf": lambda: Hostile(
            one_page(page_entries=b"/UserUnit 20"),
            "decompression_bomb", "a letter page scaled 20x by UserUnit",
        ),
        "userunit-letter.pdf": lambda: Hostile(
            one_page(b"0 0 8.5 11", b"/UserUnit 72", text_at=b"1 10"), None, "8.5x11 units of 1 inch"
        ),
        "empty-mediabox.pdf": lambda: Hostile(one_page(b"0 0 0 0"), None, "no area: PDFium falls back to Letter"),
        "image-bomb.pdf": lambda: Hostile(
            one_page(resources=b"/XObject << /Im0 6 0 R >>", content=b"q 612 0 0 792 0 0 cm /Im0 Do Q ",
                     extra=(image_bomb,)),
            "decompression_bomb", "embeds a 30000x30000 image",
        ),
        "missing-dimensions.tiff": lambda: Hostile(
            tiff_without_dimensions_on_page_2(), "corrupt", "Pillow: TypeError: Missing dimensions"
        ),
        "too-many-frames.tiff": lambda: Hostile(
            image_bytes(Image.new("1", (8, 8)), "TIFF", save_all=True, append_images=[Image.new("1", (8, 8))] * 200),
            "too_many_pages", "201 frames",
        ),
        "scan-81mpx.png": lambda: Hostile(_png_bomb(9000, 9000), "decompression_bomb", "81 Mpx, over the limit"),
        "bomb-10gpx.png": lambda: Hostile(_png_bomb(100_000, 100_000), "decompression_bomb", "10 Gpx declared"),
        "largest-accepted.png": lambda: Hostile(
            image_bytes(Image.new("RGB", (LARGEST_ACCEPTED_SIDE,) * 2, "white"), "PNG"), None,
            "just under the pixel limit: must also fit the worker memory cap later",
        ),
        "truncated.jpg": lambda: Hostile(
            image_bytes(Image.effect_noise((300, 300), 60).convert("L"), "JPEG")[:3000], "corrupt", "cut JPEG"
        ),
        "sideways.jpg": lambda: Hostile(sideways_jpeg(), None, "EXIF orientation 6"),
        "png-named.jpg": lambda: Hostile(png, "extension_mismatch", "PNG content, .jpg name"),
        "pdf-named.tiff": lambda: Hostile(one_page(title="tiff"), "extension_mismatch", "PDF content, .tiff name"),
        "notes.pdf": lambda: Hostile(b"Borrower notes, plain text\n" * 20, "unsupported_format", "text named .pdf"),
        "no-extension": lambda: Hostile(one_page(title="none"), "extension_mismatch", "a PDF without an extension"),
    }
    return {name: make() for name, make in corpus.items()}
