"""The document-type model: TF-IDF over word and character n-grams, a linear classifier with
calibrated probabilities, and ``unknown`` below a confidence threshold.

Character n-grams keep it working on OCR text with broken words; numbers are folded to ``0`` so
amounts and dates carry no signal. Training includes non-loan forms as their own class, and any
answer less likely than ``min_confidence`` is ``unknown``, so a rental application is not forced
into a loan type.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from mlops.extraction.ranker import TRUSTED_INPUT
from mlops.models import DOCUMENT_TYPES, UNKNOWN_DOCUMENT_TYPE

MAX_CHARS = 6000
"""Only the start of a document is read: titles and the field block are there, and a 200-page
document costs no more than a short one."""


HEAD_LINES = 3


def normalise_text(text: str) -> str:
    return re.sub(r"\d", "0", text[:MAX_CHARS].lower())


def document_head(text: str) -> str:
    """The first lines (title, sender): weighed on their own, so shared boilerplate further down
    (a repayment paragraph on a billing statement) cannot outvote the title."""
    return "\n".join([line for line in text.splitlines() if line.strip()][:HEAD_LINES])


@dataclass
class DocTypeModel:
    pipeline: Pipeline
    min_confidence: float

    @classmethod
    def train(cls, texts: Sequence[str], labels: Sequence[str], *, min_confidence: float, c: float = 4.0) -> DocTypeModel:
        features = FeatureUnion(
            [
                ("words", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=40000)),
                (
                    "chars",
                    TfidfVectorizer(
                        analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True, max_features=60000
                    ),
                ),
                (
                    "head",
                    TfidfVectorizer(
                        analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True, preprocessor=document_head
                    ),
                ),
            ]
        )
        classifier = CalibratedClassifierCV(LogisticRegression(C=c, max_iter=2000), method="sigmoid", cv=3, ensemble=False)
        pipeline = Pipeline([("features", features), ("classifier", classifier)])
        pipeline.fit([normalise_text(text) for text in texts], list(labels))
        return cls(pipeline, min_confidence)

    def predict(self, text: str) -> tuple[str, float]:
        """(document type or ``unknown``, probability of the most likely type)."""
        return self.predict_many([text])[0]

    def predict_many(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """:meth:`predict` of each text, in one pass through the model."""
        readable = [index for index, text in enumerate(texts) if text.strip()]
        answers = [(UNKNOWN_DOCUMENT_TYPE, 0.0)] * len(texts)
        if readable:
            with sklearn.config_context(**TRUSTED_INPUT):
                probabilities = self.pipeline.predict_proba([normalise_text(texts[index]) for index in readable])
            for index, row in zip(readable, probabilities, strict=True):
                best = int(row.argmax())
                label, confidence = str(self.pipeline.classes_[best]), float(row[best])
                known = label in DOCUMENT_TYPES and confidence >= self.min_confidence
                answers[index] = (label if known else UNKNOWN_DOCUMENT_TYPE, round(confidence, 4))
        return answers
