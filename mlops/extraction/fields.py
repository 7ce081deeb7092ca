"""Parse the loan fields out of page text, from a clean text layer or from noisy OCR.

The documents print one ``Label: value`` per line. Each field is found by its label at the
start of a line, matched loosely (case, spacing, the letters OCR confuses), and its value is
normalised: money and rates to float, the term to int, dates to ISO ``yyyy-mm-dd``, account
numbers to the printed ``####-####-##`` form.

Values are reported as printed, however implausible (a negative principal, a 48% rate):
judging them is the anomaly stage's job, and it needs to see them.
"""

from __future__ import annotations

import calendar
import difflib
import re
from collections.abc import Callable
from datetime import date
from typing import NamedTuple

from mlops.models import FieldValue

REPAIRED_PENALTY = 0.75
"""Confidence multiplier when a value only parsed after character repairs (O->0, l->1, ...)."""

LABELS: dict[str, tuple[str, ...]] = {
    "borrower_name": ("Borrower Name", "Borrower"),
    "account_number": ("Account Number", "Account No", "Account #", "Loan Number"),
    "servicer": ("Servicer", "Loan Servicer"),
    "principal": ("Principal Balance", "Principal Amount", "Principal", "Outstanding Principal"),
    "interest_rate": ("Interest Rate",),
    "disbursement_date": ("Disbursement Date", "Date of Disbursement"),
    "term_months": ("Repayment Term", "Loan Term", "Term"),
    "monthly_payment": ("Monthly Payment", "Monthly Payment Amount"),
}

# Letters Tesseract swaps for look-alikes, as regex classes used inside label patterns.
_LOOKALIKES = {
    "i": "[il1|!]",
    "l": "[il1|I]",
    "o": "[o0]",
    "s": "[s5]",
    "m": "(?:m|rn)",
    "n": "(?:n|ri)",
    "b": "[b8]",
}
_DIGIT_REPAIRS = str.maketrans({"O": "0", "o": "0", "D": "0", "Q": "0", "l": "1", "I": "1", "i": "1",
                                "|": "1", "!": "1", "S": "5", "s": "5", "B": "8", "Z": "2", "z": "2"})  # fmt: skip
_SEPARATOR = r"\s*[:;.,]"
_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): number for number, name in enumerate(calendar.month_abbr) if name})
_MONTHS["sept"] = 9


def _label_pattern(label: str) -> str:
    parts = []
    for char in label.lower():
        if char == " ":
            parts.append(r"\s*")
        elif char in _LOOKALIKES:
            parts.append(_LOOKALIKES[char])
        else:
            parts.append(re.escape(char))
    return "".join(parts)


def _line_regex(labels: tuple[str, ...], separator_required: bool) -> re.Pattern[str]:
    alternatives = "|".join(_label_pattern(label) for label in sorted(labels, key=len, reverse=True))
    separator = _SEPARATOR if separator_required else rf"(?:{_SEPARATOR})?"
    return re.compile(
        rf"^[^\w\n]{{0,3}}(?:{alternatives})(?![a-z]){separator}[ \t]*(?P<value>[^\n]*?)[ \t]*$",
        re.IGNORECASE | re.MULTILINE,
    )


class _Parsed(NamedTuple):
    """A normalised value and whether characters had to be repaired to get it."""

    value: str | float
    repaired: bool = False


def _repair_digits(text: str) -> tuple[str, bool]:
    fixed = text.translate(_DIGIT_REPAIRS)
    return fixed, fixed != text


def parse_money(raw: str) -> _Parsed | None:
    """``$12,345.67`` / ``-$1,234.56`` / OCR variants (``S12,345.67``, ``$12.345,67``, ``$l2,345.67``)."""
    match = re.match(r"(?P<sign>[-~\u2012-\u2015]\s*)?[$Ss]?\s*(?P<sign2>-\s*)?(?P<number>[\dOoDQlIi|!SsBZz,. ]+)",
                     raw.strip())  # fmt: skip
    if not match or not re.search(r"\d", match["number"]):
        return None
    number, repaired = _repair_digits(match["number"].strip())
    number = number.replace(" ", "")
    clean = re.fullmatch(r"\d{1,3}(?:,\d{3})*\.\d{2}|\d+\.\d{2}|\d+", number) is not None
    separators = [i for i, c in enumerate(number) if c in ",."]
    digits = number.replace(",", "").replace(".", "")
    if not digits.isdigit():
        return None
    if separators and len(number) - separators[-1] - 1 == 2:
        amount = float(f"{digits[:-2]}.{digits[-2:]}")
    else:
        amount = float(digits)
    negative = bool(match["sign"] or match["sign2"])
    return _Parsed(-amount if negative else amount, repaired or not clean)


def parse_rate(raw: str) -> _Parsed | None:
    """``6.80%`` / ``6.80 %`` / ``6,80%`` -> 6.8 (percent, not a fraction)."""
    match = re.match(r"(?P<number>[\dOoDlIi|!SsBZz]+(?:\s*[.,]\s*[\dOoDlIi|!SsBZz]+)?)\s*(?P<pct>%|percent)?",
                     raw.strip(), re.IGNORECASE)  # fmt: skip
    if not match or not re.search(r"\d", match["number"]):
        return None
    number, repaired = _repair_digits(re.sub(r"\s", "", match["number"]))
    number = number.replace(",", ".")
    try:
        rate = float(number)
    except ValueError:
        return None
    return _Parsed(rate, repaired or match["pct"] is None or "," in match["number"])


def parse_term(raw: str) -> _Parsed | None:
    """``120 months`` -> 120; a bare number is taken as months."""
    match = re.match(r"(?P<number>[\dOoDlIi|!SsBZz]+)\s*(?P<unit>m\w*)?", raw.strip(), re.IGNORECASE)
    if not match or not re.search(r"\d", match["number"]):
        return None
    number, repaired = _repair_digits(match["number"])
    if not number.isdigit():
        return None
    return _Parsed(int(number), repaired or match["unit"] is None)


def parse_date(raw: str) -> _Parsed | None:
    """``03/14/2019`` (US month first), ``March 14, 2019``, ``14 March 2019`` or ``2019-03-14``."""
    text = raw.strip()
    numeric, repaired = _repair_digits(text)
    iso = re.match(r"(\d{4})\s*[-/.]\s*(\d{1,2})\s*[-/.]\s*(\d{1,2})\b", numeric)
    if iso:
        return _make_date(int(iso[1]), int(iso[2]), int(iso[3]), repaired)
    us = re.match(r"(\d{1,2})\s*[/.-]\s*(\d{1,2})\s*[/.-]\s*(\d{4})\b", numeric)
    if us:
        return _make_date(int(us[3]), int(us[1]), int(us[2]), repaired)
    words = re.match(r"([A-Za-z]{3,})\.?\s*([\dOoIl|]{1,2})\s*[,.]?\s*([\dOoIlSB|]{4})\b", text)
    if words:
        return _month_name_date(words[2], words[1], words[3])
    european = re.match(r"([\dOoIl|]{1,2})\s+([A-Za-z]{3,})\.?,?\s*([\dOoIlSB|]{4})\b", text)
    if european:
        return _month_name_date(european[1], european[2], european[3])
    return None


def _month_name_date(day_text: str, month_word: str, year_text: str) -> _Parsed | None:
    """A date printed with the month as a word ("March 14, 2024" or "14 March 2024")."""
    month, fuzzy = _month(month_word)
    day, day_repaired = _repair_digits(day_text)
    year, year_repaired = _repair_digits(year_text)
    if month and day.isdigit() and year.isdigit():
        return _make_date(int(year), month, int(day), fuzzy or day_repaired or year_repaired)
    return None


def _month(word: str) -> tuple[int | None, bool]:
    key = word.lower()
    if key in _MONTHS:
        return _MONTHS[key], False
    close = difflib.get_close_matches(key, list(_MONTHS), n=1, cutoff=0.7)
    return (_MONTHS[close[0]], True) if close else (None, False)


def _make_date(year: int, month: int, day: int, repaired: bool) -> _Parsed | None:
    try:
        return _Parsed(date(year, month, day).isoformat(), repaired)
    except ValueError:
        return None


def parse_account_number(raw: str) -> _Parsed | None:
    """Ten digits in any grouping -> ``####-####-##``; other shapes are kept as read."""
    token = re.match(r"[\w\-\s|!]+", raw.strip())
    if not token:
        return None
    fixed, repaired = _repair_digits(token[0].strip())
    digits = re.sub(r"\D", "", fixed)
    if len(digits) == 10:
        canonical = f"{digits[:4]}-{digits[4:8]}-{digits[8:]}"
        return _Parsed(canonical, repaired or re.sub(r"\s", "", fixed) != canonical)
    if len(digits) >= 4 and re.fullmatch(r"[\d\- ]+", fixed):
        return _Parsed(re.sub(r"\s+", "", fixed), True)
    return None


def parse_text(raw: str) -> _Parsed | None:
    """A name: spacing collapsed; stray OCR marks at the ends dropped; digits make it suspect."""
    value = re.sub(r"\s+", " ", raw).strip(" \t|_~-:;,'\"")
    if not re.search(r"[A-Za-z]{2,}", value):
        return None
    return _Parsed(value, bool(re.search(r"[\d|_~@#$%^*{}\[\]<>]", value)))


_PARSERS: dict[str, tuple[Callable[[str], _Parsed | None], bool]] = {
    "borrower_name": (parse_text, True),
    "account_number": (parse_account_number, False),
    "servicer": (parse_text, True),
    "principal": (parse_money, False),
    "interest_rate": (parse_rate, False),
    "disbursement_date": (parse_date, False),
    "term_months": (parse_term, False),
    "monthly_payment": (parse_money, False),
}
_REGEXES = {name: _line_regex(LABELS[name], required) for name, (_, required) in _PARSERS.items()}


def parse_fields(text: str, ocr_confidence: float | None) -> dict[str, FieldValue]:
    """Every field found in ``text``; an absent field is not in the result.

    ``ocr_confidence`` is None for a text layer (its characters are exact, so confidence is
    1.0) and the OCR mean word confidence otherwise, which scales each field's confidence.
    The first line whose value parses wins: page 1 holds every field, later pages repeat some.
    """
    base = 1.0 if ocr_confidence is None else max(0.0, min(1.0, ocr_confidence))
    found: dict[str, FieldValue] = {}
    for name, (parser, _) in _PARSERS.items():
        for match in _REGEXES[name].finditer(text):
            raw = match["value"]
            parsed = parser(raw) if raw else None
            if parsed is None:
                continue
            confidence = base * (REPAIRED_PENALTY if parsed.repaired else 1.0)
            found[name] = FieldValue(value=parsed.value, raw=raw, confidence=round(confidence, 4))
            break
    return found
