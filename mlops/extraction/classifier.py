"""Document-type classification by weighted key phrases.

Each type has a few phrases: its title and subtitle weigh most, then terms only that kind of
form uses. Text is lowercased and reduced to letters, digits and single spaces first, so OCR
punctuation noise and line breaks do not matter. A phrase counts once however often it occurs,
so a long document does not outvote a short one.
"""

from __future__ import annotations

import math
import re

from mlops.models import DOCUMENT_TYPES

TITLE = 6.0
SUBTITLE = 4.0
STRONG = 2.0
WEAK = 1.0
TEMPERATURE = 2.0
"""Softmax temperature over phrase scores: a title and subtitle (10 points) against nothing gives
~0.97 confidence, a title alone (6) against one weak phrase (1) ~0.78; a tie gives 0.5 or less."""

PHRASES: dict[str, dict[str, float]] = {
    "master_promissory_note": {
        "master promissory note": TITLE,
        "borrower agreement": SUBTITLE,
        "promissory note": STRONG,
        "promise to pay": STRONG,
        "borrower s certification": WEAK,
        "loan type": WEAK,
    },
    "disclosure_statement": {
        "loan disclosure statement": TITLE,
        "truth in lending disclosure": SUBTITLE,
        "disclosure statement": STRONG,
        "finance charge": STRONG,
        "total of payments": STRONG,
        "annual percentage rate": WEAK,
        "amount financed": WEAK,
    },
    "billing_statement": {
        "monthly billing statement": TITLE,
        "student loan account summary": SUBTITLE,
        "billing statement": STRONG,
        "payment due date": STRONG,
        "past due amount": STRONG,
        "amount due": WEAK,
        "payment coupon": WEAK,
    },
    "deferment_forbearance_request": {
        "deferment forbearance request": TITLE,
        "temporarily postpone or reduce payments": SUBTITLE,
        "forbearance period": STRONG,
        "request type": STRONG,
        "economic hardship": WEAK,
        "interest accrual": WEAK,
    },
    "idr_application": {
        "income driven repayment plan request": TITLE,
        "application and annual recertification": SUBTITLE,
        "income driven repayment": STRONG,
        "adjusted gross income": STRONG,
        "family size": WEAK,
        "requested plan": WEAK,
    },
    "enrollment_verification": {
        "enrollment verification": TITLE,
        "certification of student enrollment status": SUBTITLE,
        "registrar certification": STRONG,
        "enrollment status": STRONG,
        "academic term": WEAK,
        "registrar": WEAK,
    },
}
assert set(PHRASES) == set(DOCUMENT_TYPES)


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def scores(text: str) -> dict[str, float]:
    """The summed weight of the phrases of each type found in ``text``."""
    padded = f" {normalise(text)} "
    return {
        doc_type: sum(weight for phrase, weight in phrases.items() if f" {phrase} " in padded)
        for doc_type, phrases in PHRASES.items()
    }


def classify(text: str) -> tuple[str | None, float]:
    """The most likely document type and a confidence in [0, 1]; (None, 0.0) when no phrase matches.

    The confidence is the softmax probability of the winner, so it is high only when the winner
    leads by several phrase weights, and low when two types tie.
    """
    by_type = scores(text)
    best = max(by_type, key=by_type.__getitem__)
    if by_type[best] == 0:
        return None, 0.0
    exponents = {
        doc_type: math.exp((score - by_type[best]) / TEMPERATURE) for doc_type, score in by_type.items()
    }
    return best, round(1.0 / sum(exponents.values()), 4)
