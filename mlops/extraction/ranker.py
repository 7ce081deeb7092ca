"""The field ranker: a scikit-learn model that scores (field, candidate) pairs and picks one value
per field, or none, with a calibrated confidence.

Training rows come from labelled documents: a candidate is positive for a field when its value
equals the label's (``mlops.extraction.evaluation.value_matches``). The model sees only the
features of ``mlops.extraction.candidates`` plus which field is asked, so what it learns is how
labels, positions and value shapes relate, not any one layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import ThreadpoolController

from mlops.extraction.candidates import Candidate
from mlops.models import FIELD_NAMES, FieldValue

TRUSTED_INPUT = {"assume_finite": True, "skip_parameter_validation": True}
"""Scoring input is built by this package: sklearn's checks cost more than the model (~5 ms a document)."""


def design_row(field_name: str, features: Sequence[float]) -> list[float]:
    """A candidate's features followed by the one-hot of the field it is scored for."""
    return [*features, *(float(field_name == name) for name in FIELD_NAMES)]


@dataclass
class FieldRanker:
    """Runs single-threaded: OpenMP threads spinning beside the OCR workers on a busy 2-core machine
    made fitting ~100x slower."""

    model: CalibratedClassifierCV
    min_confidence: float = 0.5  # chosen by training (``mlops.extraction.training.field_threshold``)

    @classmethod
    def train(
        cls,
        rows: np.ndarray,
        positive: np.ndarray,
        *,
        max_iter: int = 200,
        learning_rate: float = 0.1,
        seed: int = 0,
    ) -> FieldRanker:
        booster = HistGradientBoostingClassifier(
            max_iter=max_iter, learning_rate=learning_rate, l2_regularization=1.0, random_state=seed
        )
        model = CalibratedClassifierCV(booster, method="isotonic", cv=3, ensemble=False)
        with _threadpools().limit(limits=1):
            model.fit(rows, positive)
        return cls(model)

    def scores(self, rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.zeros(0)
        # predict_proba()[:, 1] of the one calibrated classifier (ensemble=False) without the
        # wrapper's per-call checks, which cost as much as the trees
        (calibrated,) = self.model.calibrated_classifiers_
        with _threadpools().limit(limits=1), sklearn.config_context(**TRUSTED_INPUT):
            return calibrated.calibrators[0].predict(calibrated.estimator.decision_function(rows))

    def pick(self, table: Sequence[tuple[str, Candidate, list[float]]], raw_text) -> dict[str, FieldValue]:
        """The best candidate of each field, kept when its probability reaches ``min_confidence``.

        ``raw_text(candidate)`` gives the printed text of a candidate (for provenance).
        """
        if not table:
            return {}
        scores = self.scores(np.array([design_row(name, features) for name, _, features in table]))
        best: dict[str, tuple[float, Candidate]] = {}
        for (name, candidate, _), score in zip(table, scores, strict=True):
            if score >= self.min_confidence and score > best.get(name, (-1.0, None))[0]:
                best[name] = (float(score), candidate)
        return {
            name: FieldValue(value=candidate.value, raw=raw_text(candidate), confidence=round(score, 4))
            for name, (score, candidate) in best.items()
        }


@cache
def _threadpools() -> ThreadpoolController:
    """Found once per process: looking up the loaded thread-pool libraries took ~10 ms, more
    than scoring a document's candidates."""
    return ThreadpoolController()
