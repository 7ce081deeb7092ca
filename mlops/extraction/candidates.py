"""Field candidates: typed values found on a page, each with the label evidence around it.

A candidate is a value of one type (money, rate, date, term, account id, person name,
servicer) at a place on a page. For each field that type can fill, the candidate gets a row of
features: how well the words to its left (same line, with or without a separator), the cell
above it (a box label, the line before, a table header) and the phrase before it in a sentence
match that field's label lexicon, the other fields' lexicons and the labels of distractors
(fees, due dates, signature dates...), plus where it is, how big, how confidently read and how
often the same value recurs. ``mlops.extraction.ranker`` scores these rows; nothing here is tuned
to one layout.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml
from rapidfuzz import fuzz, process

from mlops.extraction.layout import Line, PageLayout, Word
from mlops.models import FIELD_NAMES

FIELD_TYPES: dict[str, str] = {
    "borrower_name": "name",
    "account_number": "account",
    "servicer": "servicer",
    "principal": "money",
    "interest_rate": "rate",
    "disbursement_date": "date",
    "term_months": "term",
    "monthly_payment": "money",
}
VALUE_TYPES = ("name", "account", "servicer", "money", "rate", "date", "term")
LEFT_WORDS = 5
SEGMENT_GAP = 1.5
"""A horizontal gap wider than this many line heights separates two boxes or columns."""
ABOVE_LINES = 4
CELL_GAP = 0.8
"""A gap wider than this many line heights separates two cells of a table row (words of one cell
are about 0.2-0.3 line heights apart)."""
OTHER = "other"
# Words that belong to a value rather than to a label: a cell made only of these and of words
# with digits (``USD 7,030.82``, ``180 monthly payments``, ``4.2 %``) holds a value, not a label.
_UNIT_WORDS = frozenset(["usd", "$", "%", "percent", "pct", "mo", "mos", "month", "months", "year", "years", "yr",
                         "yrs", "monthly", "payments", "installments", "dollars", "-", "n/a", "na"])  # fmt: skip

# OCR reads digits as look-alike letters; inside a token that is mostly digits they are repaired.
_DIGIT_LOOKALIKES = str.maketrans({"O": "0", "o": "0", "D": "0", "Q": "0", "l": "1", "I": "1", "i": "1",
                                   "|": "1", "!": "1", "S": "5", "B": "8", "Z": "2", "z": "2"})  # fmt: skip
_NUMERIC_CHARS = set("0123456789$,.%-/")
_MONTHS = {
    name: number
    for number, names in enumerate(
        (("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
         ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
         ("oct", "october"), ("nov", "november"), ("dec", "december")),
        start=1,
    )
    for name in names
}  # fmt: skip
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_MONEY = re.compile(
    r"(?<![\w.,$-])(?P<neg>-)?(?P<cur>US\$|USD\s?|\$\s?)?(?P<neg2>-)?"
    r"(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d{2})?|\d+\.\d{2}|\d+)(?P<cur2>\s?USD|\s?dollars)?(?![\w%,]|\.\d|\s?%|\s?percent)",
    re.IGNORECASE,
)
_RATE = re.compile(r"(?<![\w.])(?P<number>\d{1,2}(?:\.\d{1,4})?)\s?(?:%|percent\b|pct\b)", re.IGNORECASE)
_TERM = re.compile(
    r"(?<![\w.,(])(?P<number>\d{1,3})(?:\s?(?P<months>months?|mos?\b\.?|monthly\s+payments|payments|installments)"
    r"|\s?(?P<years>years?|yrs?\b\.?))?(?![\w,%/-]|\.\w)",
    re.IGNORECASE,
)
_DATE_PATTERNS = (
    re.compile(r"(?<![\w/.-])(?P<year>\d{4})-(?P<a>\d{1,2})-(?P<b>\d{1,2})(?![\w/-])"),
    re.compile(r"(?<![\w/.-])(?P<a>\d{1,2})(?P<sep>[/.-])(?P<b>\d{1,2})(?P=sep)(?P<year>\d{4}|\d{2})(?![\w/-])"),
    re.compile(rf"(?<!\w){_MONTH}\s?(?P<day>\d{{1,2}})(?:st|nd|rd|th)?,?\s?(?P<year>\d{{4}})(?!\w)", re.IGNORECASE),
    re.compile(rf"(?<!\w)(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\s?{_MONTH},?\s?(?P<year>\d{{4}})(?!\w)", re.IGNORECASE),
)
_ACCOUNT = re.compile(r"^[A-Z]{0,4}[-#]?\d[\dA-Z-]{4,}$")
_DIGIT = re.compile(r"\d")
_INITIAL = re.compile(r"[A-Z]\.$")
_PHONE = re.compile(r"^(?:1-)?\(?\d{3}\)?-\d{3}-\d{4}$")
_NAME_WORD = re.compile(r"^(?:[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?|[A-Z][A-Z'-]+|[A-Z]\.)$")
_ABBREVIATIONS = (
    (re.compile(r"\bacct\b\.?"), "account"),
    (re.compile(r"\bno\b\.?|#"), " number "),
    (re.compile(r"\bnum\b\.?"), "number"),
    (re.compile(r"\bamt\b\.?"), "amount"),
    (re.compile(r"\bpmt\b\.?"), "payment"),
    (re.compile(r"\bmo\b\.?"), "monthly"),
    (re.compile(r"\bint\b\.?"), "interest"),
    (re.compile(r"\bdisb\b\.?"), "disbursement"),
    (re.compile(r"\borig\b\.?"), "original"),
)
_LITTLE_WORDS = frozenset(["a", "an", "the", "of", "on", "at", "by", "for", "to", "in", "is", "are", "was", "be", "your", "our", "my", "this", "that", "its", "with"])
COMMON_WORDS = frozenset(
    ["the", "a", "an", "and", "or", "of", "to", "for", "in", "on", "at", "by", "from", "with", "your", "you", "our", "we", "this", "that", "is", "are", "be", "will", "may", "please", "if", "not", "any", "all", "loan", "loans", "student", "students", "account", "accounts", "payment", "payments", "amount", "balance", "principal", "interest", "rate", "date", "dates", "term", "terms", "monthly", "statement", "summary", "servicing", "servicer", "services", "service", "education", "finance", "lending", "lender", "financial", "federal", "private", "total", "due", "past", "fee", "fees", "late", "number", "no", "name", "borrower", "school", "university", "college", "institute", "institution", "plan", "repayment", "request", "application", "form", "note", "agreement", "disclosure", "notice", "important", "information", "details", "section", "page", "summary", "signature", "signed", "dear", "sincerely", "re", "customer", "p", "o", "box", "street", "avenue", "road", "suite", "city", "state", "zip", "phone", "fax", "email", "online", "www", "enrollment", "verification", "deferment", "forbearance", "income", "driven", "master", "promissory", "truth", "lending", "billing", "annual", "percentage", "apr", "finance", "charge", "schedule", "period", "status", "type", "department", "office", "year", "years", "month", "months", "day", "days", "new", "current", "original", "final", "first", "second"]
)


@dataclass(frozen=True)
class Lexicon:
    """Label wordings per field plus the labels of distractor values (``other``), normalised."""

    phrases: tuple[str, ...]
    owners: tuple[str, ...]  # the field (or OTHER) of each phrase
    servicers: dict[str, tuple[str, ...]]  # canonical name -> normalised names it prints

    @classmethod
    def load(cls, lexicon_file: Path, servicers_file: Path) -> Lexicon:
        lexicon = _read_yaml(lexicon_file)
        phrases, owners = [], []
        for owner, wordings in [*lexicon["fields"].items(), (OTHER, lexicon[OTHER])]:
            for wording in wordings:
                phrases.append(normalise_label(str(wording)))
                owners.append(owner)
        servicers = {
            str(name): tuple(_normalise(str(alias)) for alias in [name, *(aliases or [])])
            for name, aliases in _read_yaml(servicers_file)["servicers"].items()
        }
        return cls(tuple(phrases), tuple(owners), servicers)


def _read_yaml(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


@lru_cache(maxsize=4096)
def normalise_label(text: str) -> str:
    """Lower case, abbreviations expanded, punctuation and little words dropped:
    ``Acct. No.`` -> ``account number``, ``at a fixed rate of`` -> ``fixed rate``."""
    text = text.lower()
    for pattern, replacement in _ABBREVIATIONS:
        text = pattern.sub(replacement, text)
    return " ".join(word for word in _normalise(text).split() if word not in _LITTLE_WORDS)


@dataclass
class Candidate:
    value_type: str
    value: str | float | int
    page: int
    line: int
    first_word: int
    last_word: int  # inclusive
    repaired: bool = False
    unit: bool = True  # the value carried its unit or currency ($, %, months, a 4-digit year...)
    features: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- typed values


def _repaired_line(line: Line) -> tuple[str, list[bool]]:
    """The line's text with look-alike letters repaired inside numeric-looking words (same length)."""
    words, repaired = [], []
    for word in line.words:
        text = word.text
        digits = 0 if text.isalpha() else sum(char.isdigit() for char in text)
        if digits and (digits + sum(char in _NUMERIC_CHARS for char in text)) >= len(text) * 0.6:
            fixed = text.translate(_DIGIT_LOOKALIKES)
            if fixed[0] == "5" and text[0] == "S" and len(fixed) > 1 and fixed[1].isdigit():
                fixed = "$" + fixed[1:]
            repaired.append(fixed != text)
            text = fixed
        else:
            repaired.append(False)
        words.append(text)
    return " ".join(words), repaired


def _span(line: Line, start: int, end: int) -> tuple[int, int]:
    return line.word_at(start), line.word_at(max(start, end - 1))


def _money_values(text: str) -> Iterator[tuple[int, int, float, bool]]:
    for match in _MONEY.finditer(text):
        number = match["number"]
        has_currency = bool(match["cur"] or match["cur2"])
        if not has_currency and "." not in number and "," not in number:
            continue
        amount = float(number.replace(",", ""))
        if match["neg"] or match["neg2"]:
            amount = -amount
        yield match.start(), match.end(), amount, has_currency


def _rate_values(text: str) -> Iterator[tuple[int, int, float, bool]]:
    for match in _RATE.finditer(text):
        yield match.start(), match.end(), float(match["number"]), True


def _term_values(text: str) -> Iterator[tuple[int, int, int, bool]]:
    for match in _TERM.finditer(text):
        number = int(match["number"])
        if match["years"]:
            if 1 <= number <= 40:
                yield match.start(), match.end(), number * 12, True
        elif 3 <= number <= 480:
            yield match.start(), match.end(), number, bool(match["months"])


def _year(text: str) -> int:
    year = int(text)
    return year if len(text) == 4 else (2000 + year if year < 50 else 1900 + year)


def parse_date(text: str, day_first: bool = False) -> tuple[str, bool] | None:
    """An ISO date and whether the year was printed in full, for one date written any common way:
    ``03/14/2019``, ``03-14-19``, ``2019-03-14``, ``March 14, 2019``, ``Mar. 14 2019``, ``14 Mar 2019``.

    Numeric dates are read month first (US) unless ``day_first``; when the first number cannot
    be a month (``14/03/2019``) the other order is used.
    """
    found = next(_date_values(text, day_first), None)
    return None if found is None else (found[2], found[3])


def _date_values(text: str, day_first: bool = False) -> Iterator[tuple[int, int, str, bool]]:
    for pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            groups = match.groupdict()
            year = _year(groups["year"])
            if groups.get("month"):
                month, day = _MONTHS[groups["month"].lower().rstrip(".")], int(groups["day"])
            elif "sep" not in groups:
                month, day = int(groups["a"]), int(groups["b"])
            else:
                first, second = int(groups["a"]), int(groups["b"])
                month, day = (second, first) if day_first else (first, second)
                if month > 12 >= day:
                    month, day = day, month
            try:
                iso = date(year, month, day).isoformat()
            except ValueError:
                continue
            yield match.start(), match.end(), iso, len(groups["year"]) == 4


def _account_values(line: Line) -> Iterator[tuple[int, int, str]]:
    for index, word in enumerate(line.words):
        token = word.text.strip(".,;:()[]")
        token = token.removeprefix("#")
        if (
            _ACCOUNT.match(token)
            and sum(char.isdigit() for char in token) >= 6
            and not _PHONE.match(token)
            and not re.fullmatch(r"\d{1,4}-\d{1,2}-\d{1,4}", token)
        ):
            yield index, index, token


def _common_word(word: str) -> bool:
    """A word of COMMON_WORDS, but not an initial: ``A.`` and ``P.`` in ``Nadia A. Thornbury``
    are not the article and the ``P.`` of ``P.O. Box``."""
    return not _INITIAL.match(word) and word.lower().strip(".") in COMMON_WORDS


def _name_values(line: Line) -> Iterator[tuple[int, int, str]]:
    """Every 2-4 word span of a run of capitalised words (``Holder Priya Oyelaran`` gives
    ``Priya Oyelaran`` too: a label without a separator looks like a name's first word), unless
    all its words are common ones (``Account Number``, ``Important Loan Information``: 40% of the
    spans on the sample documents)."""
    words = [word.text.rstrip(",;:") for word in line.words]
    index = 0
    while index < len(words):
        end = index
        while end < len(words) and _NAME_WORD.match(words[end]):
            if end > index and line.words[end].x0 - line.words[end - 1].x1 > SEGMENT_GAP * line.height:
                break
            end += 1
            if line.words[end - 1].text.endswith((",", ";", ":")):
                break
        for first in range(index, end - 1):
            for last in range(first + 1, min(end, first + 4)):
                span = words[first : last + 1]
                if (
                    any(len(word) > 2 for word in span)
                    and not span[-1].endswith(".")
                    and not all(_common_word(word) for word in span)
                ):
                    yield first, last, " ".join(span)
        index = max(end, index + 1)


SERVICER_CUTOFF = 86


def _servicer_values(lines: Sequence[Line], lexicon: Lexicon) -> list[list[tuple[int, int, str]]]:
    """Per line, the known servicers it names: (first word, last word, canonical name), each
    matched by its first best alias; one vectorised rapidfuzz call for all lines."""
    names = list(lexicon.servicers)
    aliases = [alias for name in names for alias in lexicon.servicers[name]]
    owner = [name for name in names for _ in lexicon.servicers[name]]
    texts = [line.text.lower() for line in lines]
    if not texts:
        return []
    scores = process.cdist(texts, aliases, scorer=fuzz.partial_ratio, score_cutoff=SERVICER_CUTOFF, dtype=np.float64)
    found: list[list[tuple[int, int, str]]] = []
    for line, text, row in zip(lines, texts, scores):
        best: dict[str, int] = {}
        for index in np.flatnonzero(row).tolist():
            if owner[index] not in best or row[index] > row[best[owner[index]]]:
                best[owner[index]] = index
        on_line = []
        for name in names:
            if name in best:
                alignment = fuzz.partial_ratio_alignment(aliases[best[name]], text)
                on_line.append((*_span(line, alignment.dest_start, alignment.dest_end), name))
        found.append(on_line)
    return found


def find_candidates(pages: Sequence[PageLayout], lexicon: Lexicon, day_first: bool = False) -> list[Candidate]:
    """Every typed value on the pages, in reading order."""
    found: list[Candidate] = []
    for page in pages:
        servicers_of_line = _servicer_values(page.lines, lexicon)
        for number, line in enumerate(page.lines):
            text, repaired = _repaired_line(line)
            if _DIGIT.search(text):  # every typed value but names and servicers has a digit
                typed = [
                    *(("money", *found_value) for found_value in _money_values(text)),
                    *(("rate", *found_value) for found_value in _rate_values(text)),
                    *(("term", *found_value) for found_value in _term_values(text)),
                    *(("date", *found_value) for found_value in _date_values(text, day_first)),
                ]
                for value_type, start, end, value, unit in typed:
                    first, last = _span(line, start, end)
                    found.append(
                        Candidate(value_type, value, page.index, number, first, last, any(repaired[first : last + 1]), unit)
                    )
                for first, last, value in _account_values(line):
                    found.append(Candidate("account", value, page.index, number, first, last, repaired[first]))
            servicers = servicers_of_line[number]
            for first, last, value in _name_values(line):
                # A known servicer's name is an organisation, never a person's.
                if not any(first <= servicer_last and servicer_first <= last for servicer_first, servicer_last, _ in servicers):
                    found.append(Candidate("name", value, page.index, number, first, last))
            for first, last, value in servicers:
                found.append(Candidate("servicer", value, page.index, number, first, last))
    return found


# ---------------------------------------------------------------- label evidence


def _cells(line: Line) -> list[tuple[int, int]]:
    """(first, last) word indexes of the line's cells: runs of words closer than CELL_GAP line heights."""
    height = max(line.height, 1e-6)
    cells, first = [], 0
    for index in range(1, len(line.words)):
        if line.words[index].x0 - line.words[index - 1].x1 > CELL_GAP * height:
            cells.append((first, index - 1))
            first = index
    cells.append((first, len(line.words) - 1))
    return cells


def _is_value_word(text: str) -> bool:
    return any(char.isdigit() for char in text) or text.lower().strip(".,;:()") in _UNIT_WORDS


def _is_value_cell(words: Sequence[Word]) -> bool:
    """A cell that holds a value (amount, rate, date, term, number), not a label."""
    return bool(words) and all(_is_value_word(word.text) for word in words)


def _running_text(line: Line) -> bool:
    """No gap wider than SEGMENT_GAP line heights between two words: a line of a paragraph."""
    height = max(line.height, 1e-6)
    return all(b.x0 - a.x1 <= SEGMENT_GAP * height for a, b in zip(line.words, line.words[1:]))


def _left_context(page: PageLayout, line_number: int, first_word: int) -> tuple[list[str], float, int]:
    """The words before the value: the nearest group of words to its left on its line (a wide
    gap ends a group: the box or column before is not this value's label), the gap to them in
    line heights, and how many value cells were passed over. Cells holding values (a table row's
    other columns) are passed over to the nearest text cell: in ``Previous loan | 84 mo. |
    $35,857.14`` the amount's row header is ``Previous loan``. A value opening a line of running
    text continues the previous line's sentence."""
    line = page.lines[line_number]
    height = max(line.height, 1e-6)
    cells = _cells(line)
    own = next(number for number, (first, last) in enumerate(cells) if first <= first_word <= last)
    if first_word == cells[own][0] and own > 0 and _is_value_cell(line.words[cells[own - 1][0] : cells[own - 1][1] + 1]):
        skipped = 0
        for first, last in reversed(cells[:own]):
            words = line.words[first : last + 1]
            if _is_value_cell(words):
                skipped += 1
                continue
            words = words[-LEFT_WORDS:]
            return [word.text for word in words], (line.words[first_word].x0 - words[-1].x1) / height, skipped
        return [], 0.0, skipped
    words: list[Word] = []
    for index in range(first_word - 1, max(-1, first_word - 1 - LEFT_WORDS), -1):
        if words and words[0].x0 - line.words[index].x1 > SEGMENT_GAP * height:
            break
        words.insert(0, line.words[index])
    gap = (line.words[first_word].x0 - words[-1].x1) / height if words else 0.0
    if first_word <= 2 and line_number > 0 and len(line.words) > 4 and _running_text(line):
        previous = page.lines[line_number - 1]
        if (
            line.y0 - previous.y1 < height
            and abs(previous.words[0].x0 - line.words[0].x0) < height
            and _running_text(previous)
        ):
            words = previous.words[-(LEFT_WORDS - len(words)) :] + words if len(words) < LEFT_WORDS else words
    return [word.text for word in words], gap, 0


def _cell_above(page: PageLayout, line_number: int, x0: float, x1: float) -> tuple[list[str], float, int]:
    """The words of the nearest line above that overlap the value horizontally (a box label, the
    line before, a table header), the distance to it in line heights, and how many rows were passed
    over. In a table, the cells above a value that hold values too (other rows of its column) are
    passed over to the column header: a line of at least two cells that all hold text."""
    line = page.lines[line_number]
    first_found: tuple[list[str], float] | None = None
    skipped = 0
    for above in reversed(page.lines[max(0, line_number - ABOVE_LINES) : line_number]):
        overlapping = [
            word for word in above.words if word.x1 > x0 - 0.01 and word.x0 < x1 + 0.01
        ]
        if not overlapping:
            if first_found is not None:
                break
            continue
        cell = _extend_cell(above.words, overlapping)
        found = ([word.text for word in cell], (line.y0 - above.y1) / max(line.height, 1e-6))
        if first_found is None:
            if not _is_value_cell(cell):
                return (*found, 0)
            first_found = found
            skipped = 1
            continue
        if _is_value_cell(cell):
            skipped += 1
            continue
        cells = [above.words[first : last + 1] for first, last in _cells(above)]
        if len(cells) >= 2 and not any(_is_value_cell(words) for words in cells):
            return (*found, skipped)
        break
    return (*first_found, 0) if first_found is not None else ([], 99.0, 0)


def _extend_cell(words: list[Word], overlapping: list[Word]) -> list[Word]:
    """Grow the overlapping words to the whole table cell: neighbours closer than a word gap."""
    first = words.index(overlapping[0])
    last = words.index(overlapping[-1])
    while first > 0 and overlapping[0].x0 - words[first - 1].x1 < words[first].height * 0.6:
        first -= 1
        overlapping = [words[first], *overlapping]
    while last < len(words) - 1 and words[last + 1].x0 - words[last].x1 < words[last].height * 0.6:
        last += 1
    return words[first : last + 1]


def _suffixes(words: list[str], prefixes: bool = False, shortest_prefix: int = 2) -> list[str]:
    """The label-sized endings (and, for a cell above, beginnings) of a context, normalised:
    ``RE: Account No.`` -> ``number``, ``account number``, ``re account number``."""
    cleaned = [normalise_label(word) for word in words]
    cleaned = [word for word in cleaned if word]
    found = [" ".join(cleaned[-n:]) for n in range(1, min(len(cleaned), 4) + 1)]
    if prefixes:
        found += [" ".join(cleaned[:n]) for n in range(shortest_prefix, min(len(cleaned), 4))]
    return found


CLAUSE_WORDS = 10
NO_CLAUSE_LABEL = float(CLAUSE_WORDS)


def _sentence_end(text: str) -> bool:
    """A word that ends a sentence (``loan.``, ``$590.22.``), not an abbreviation (``Nov.``, ``No.``)."""
    if not text.endswith((".", "!", "?")):
        return False
    body = text.rstrip(".!?")
    return any(char.isdigit() for char in body) or (len(body) > 3 and body.islower())


def _clause(page: PageLayout, line_number: int, first_word: int) -> list[str]:
    """Up to CLAUSE_WORDS words before the value in its sentence (into the previous line when both
    are running text): in ``The interest rate on this loan is 7.05%`` the label is not the words
    just before the value but a phrase earlier in the clause."""
    line = page.lines[line_number]
    words = [word.text for word in line.words[:first_word]]
    if len(words) < CLAUSE_WORDS and line_number > 0 and _running_text(line):
        previous = page.lines[line_number - 1]
        if line.y0 - previous.y1 < line.height and _running_text(previous) and len(previous.words) > 4:
            words = [word.text for word in previous.words] + words
    clause: list[str] = []
    for text in reversed(words[-CLAUSE_WORDS:]):
        if _sentence_end(text):
            break
        clause.insert(0, text)
    return clause


OWNERS = (*FIELD_NAMES, OTHER)


def _best_per_owner(texts: list[str], lexicon: Lexicon) -> np.ndarray:
    """(text, owner) -> the best fuzzy similarity (0-100) of the text to the owner's wordings, owners
    in OWNERS order; one vectorised rapidfuzz call."""
    unique = {text: row for row, text in enumerate(dict.fromkeys(texts))}
    matrix = process.cdist(list(unique), lexicon.phrases, scorer=fuzz.ratio, dtype="uint8")
    columns = [[i for i, o in enumerate(lexicon.owners) if o == owner] for owner in OWNERS]
    best = np.stack([matrix[:, cols].max(axis=1) for cols in columns], axis=1)
    return best[[unique[text] for text in texts]]


def _best_per_group(values: np.ndarray, sizes: list[int]) -> tuple[list[int], list[list[int]]]:
    """Column-wise maxima of consecutive row groups of ``sizes`` rows: the indexes of the non-empty
    groups and their maxima."""
    nonempty = [index for index, size in enumerate(sizes) if size]
    if not nonempty:
        return [], []
    starts = np.cumsum([0, *sizes])[:-1][nonempty]
    return nonempty, np.maximum.reduceat(values, starts, axis=0).tolist()


def _clause_similarities(clauses: list[list[str]], lexicon: Lexicon) -> list[dict[str, tuple[float, float]]]:
    """For each clause, per field and ``other``: the best similarity of any 1-4 word phrase of it to
    the wordings, and how many words lie between that phrase and the value (NO_CLAUSE_LABEL if none;
    of equally similar phrases, the nearest)."""
    grams, distances, sizes = [], [], []
    for clause in clauses:
        tokens = [(normalise_label(word), len(clause) - 1 - position) for position, word in enumerate(clause)]
        tokens = [(token, distance) for token, distance in tokens if token]
        before = len(grams)
        for start in range(len(tokens)):
            for end in range(start + 1, min(len(tokens), start + 4) + 1):
                grams.append(" ".join(token for token, _ in tokens[start:end]))
                distances.append(tokens[end - 1][1])
        sizes.append(len(grams) - before)
    results = [dict.fromkeys(OWNERS, (0.0, NO_CLAUSE_LABEL)) for _ in clauses]
    if not grams:
        return results
    # similarity first, then the smaller distance: one integer to take the maximum of
    keys = _best_per_owner(grams, lexicon).astype(np.int64) * 1000 + (999 - np.array(distances))[:, None]
    for index, best in zip(*_best_per_group(keys, sizes)):
        similarities = [(key // 1000 / 100, 999 - key % 1000) for key in best]
        results[index] = {
            owner: (similarity, float(distance) if similarity >= 0.8 else NO_CLAUSE_LABEL)
            for owner, (similarity, distance) in zip(OWNERS, similarities)
        }
    return results


def _similarities(queries: list[list[str]], lexicon: Lexicon) -> list[dict[str, float]]:
    """For each context (its suffixes), the best fuzzy similarity (0-1) to each field's wordings
    and to the distractor labels."""
    results = [dict.fromkeys(OWNERS, 0.0) for _ in queries]
    flat = [suffix for suffixes in queries for suffix in suffixes]
    if flat:
        best = _best_per_owner(flat, lexicon)
        for index, row in zip(*_best_per_group(best, [len(suffixes) for suffixes in queries])):
            results[index] = {owner: value / 100 for owner, value in zip(OWNERS, row)}
    return results


def candidate_rows(
    pages: Sequence[PageLayout], candidates: list[Candidate], lexicon: Lexicon
) -> list[tuple[str, Candidate, list[float]]]:
    """(field, candidate, feature vector in FEATURE_NAMES order) for every field each candidate's
    type can fill."""
    by_page = {page.index: page for page in pages}
    contexts: list[list[str]] = []
    skips: list[tuple[int, int]] = []
    clauses: list[list[str]] = []
    geometry: list[tuple[float, float, float, float]] = []
    for candidate in candidates:
        page = by_page[candidate.page]
        line = page.lines[candidate.line]
        words = line.words[candidate.first_word : candidate.last_word + 1]
        left, left_gap, left_skipped = _left_context(page, candidate.line, candidate.first_word)
        above, above_gap, above_skipped = _cell_above(page, candidate.line, words[0].x0, words[-1].x1)
        # A row header (found past value cells) says what the whole row is: its first words count too.
        contexts += [_suffixes(left, prefixes=left_skipped > 0, shortest_prefix=1), _suffixes(above, prefixes=True)]
        # A capitalised label ("Home Address", "FIRST DISBURSEMENT") also reads as a name: how
        # much the name itself looks like a label.
        contexts.append(_suffixes([word.text for word in words])[-1:] if candidate.value_type == "name" else [])
        geometry.append((left_gap, above_gap, words[0].y0 / page.aspect, line.height))
        skips.append((left_skipped, above_skipped))
        clauses.append(
            _clause(page, candidate.line, candidate.first_word) if candidate.value_type not in ("name", "servicer") else []
        )
    sims = _similarities(contexts, lexicon)
    clause_sims = _clause_similarities(clauses, lexicon)
    heights = sorted(g[3] for g in geometry) or [1.0]
    median_height = heights[len(heights) // 2]
    counts: dict[tuple[str, object], int] = {}
    for candidate in candidates:
        counts[(candidate.value_type, candidate.value)] = counts.get((candidate.value_type, candidate.value), 0) + 1
    greeted = {
        line.words[i + 1].text.strip(",:;").lower()
        for page in pages
        for line in page.lines
        for i, word in enumerate(line.words[:-1])
        if word.text.lower() in ("dear", "hello", "hi")
    }
    rows = []
    for number, candidate in enumerate(candidates):
        left_sim, above_sim, own_sim = sims[3 * number : 3 * number + 3]
        left_gap, above_gap, y, height = geometry[number]
        page = by_page[candidate.page]
        line = page.lines[candidate.line]
        words = line.words[candidate.first_word : candidate.last_word + 1]
        separator = line.words[candidate.first_word - 1].text[-1:] if candidate.first_word else ""
        below = page.lines[candidate.line + 1] if candidate.line + 1 < len(page.lines) else None
        is_name = candidate.value_type == "name"
        base = {
            "left_other": left_sim[OTHER],
            "above_other": above_sim[OTHER],
            "left_gap": min(left_gap, 40.0),
            "above_gap": min(above_gap, 99.0),
            "separator_colon": float(separator == ":"),
            "separator_dash": float(separator in "-–|" and separator != ""),
            "has_left": float(candidate.first_word > 0),
            "left_skipped": float(skips[number][0]),
            "above_skipped": float(skips[number][1]),
            "prose": float(sum(w.text[:1].islower() for w in line.words) >= 3),
            "y": y,
            "page": float(candidate.page),
            "relative_size": height / max(median_height, 1e-6),
            "confidence": min(word.confidence for word in words),
            "ocr": float(page.source == "ocr"),
            "repaired": float(candidate.repaired),
            "unit": float(candidate.unit),
            "repeats": float(counts[(candidate.value_type, candidate.value)]),
            "span_words": float(candidate.last_word - candidate.first_word + 1),
            "value_label": max(own_sim.values()),
            "greeted": float(is_name and any(token.lower() in greeted for token in str(candidate.value).split())),
            "address_below": float(
                is_name
                and below is not None
                and below.words[0].text[:1].isdigit()
                and abs(below.words[0].x0 - words[0].x0) < line.height
            ),
            **_value_features(candidate),
        }
        shared = [base[name] for name in _SHARED_FEATURES]
        for field_name in FIELD_NAMES:
            if FIELD_TYPES[field_name] != candidate.value_type:
                continue
            others = _RIVALS[(field_name, candidate.unit)]
            rows.append(
                (
                    field_name,
                    candidate,
                    [  # FIELD_FEATURES, then the rest of FEATURE_NAMES
                        left_sim[field_name],
                        above_sim[field_name],
                        max((left_sim[name] for name in others), default=0.0),
                        max((above_sim[name] for name in others), default=0.0),
                        left_sim[field_name] - max(left_sim[name] for name in (*others, OTHER)),
                        above_sim[field_name] - max(above_sim[name] for name in (*others, OTHER)),
                        clause_sims[number][field_name][0],
                        clause_sims[number][field_name][0] - max(clause_sims[number][name][0] for name in (*others, OTHER)),
                        clause_sims[number][field_name][1],
                        *shared,
                    ],
                )
            )
    return rows


# A value printed with its unit ($, %, months) cannot be a field of another type: a label of such
# a field beside it ("monthly payments of $94.94" also reads as a term's "payments") is no
# evidence against it. (field, printed with unit) -> the fields whose labels count against it.
_RIVALS = {
    (field_name, unit): tuple(
        name for name in FIELD_NAMES if name != field_name and (not unit or FIELD_TYPES[name] == FIELD_TYPES[field_name])
    )
    for field_name in FIELD_NAMES
    for unit in (False, True)
}


def _value_features(candidate: Candidate) -> dict[str, float]:
    value = candidate.value
    features = {f"type_{value_type}": float(candidate.value_type == value_type) for value_type in VALUE_TYPES}
    magnitude = 0.0
    if isinstance(value, (int, float)):
        magnitude = math.log10(abs(float(value)) + 1)
    elif candidate.value_type == "date":
        magnitude = float(str(value)[:4]) - 2000
    features["magnitude"] = magnitude
    features["negative"] = float(isinstance(value, (int, float)) and value < 0)
    if candidate.value_type == "name":
        tokens = str(value).split()
        features["common_words"] = float(sum(_common_word(token) for token in tokens))
        features["upper"] = float(str(value).isupper())
    else:
        features["common_words"] = 0.0
        features["upper"] = 0.0
    features["letters"] = float(sum(char.isalpha() for char in str(value))) if candidate.value_type == "account" else 0.0
    return features


FIELD_FEATURES = (
    "left_own", "above_own", "left_best_other_field", "above_best_other_field", "left_margin",
    "above_margin", "clause_own", "clause_margin", "clause_distance",
)  # fmt: skip
"""The features that depend on the field a candidate is scored for, in candidate_rows' order."""
FEATURE_NAMES: tuple[str, ...] = (
    *FIELD_FEATURES, "left_other", "above_other", "left_gap", "above_gap", "separator_colon",
    "separator_dash", "has_left", "left_skipped", "above_skipped", "prose", "y", "page", "relative_size", "confidence", "ocr",
    "repaired", "unit", "repeats", "span_words", "value_label", "greeted", "address_below",
    *(f"type_{value_type}" for value_type in VALUE_TYPES), "magnitude", "negative", "common_words",
    "upper", "letters",
)  # fmt: skip


_SHARED_FEATURES = FEATURE_NAMES[len(FIELD_FEATURES) :]


def candidate_text(pages: Mapping[int, PageLayout], candidate: Candidate) -> str:
    """The words a candidate was read from, as printed."""
    words = pages[candidate.page].lines[candidate.line].words[candidate.first_word : candidate.last_word + 1]
    return " ".join(word.text for word in words)


def feature_table(
    pages: Sequence[PageLayout], lexicon: Lexicon, day_first: bool = False
) -> list[tuple[str, Candidate, list[float]]]:
    """(field, candidate, feature vector in FEATURE_NAMES order) for one document's pages."""
    return candidate_rows(pages, find_candidates(pages, lexicon, day_first), lexicon)
