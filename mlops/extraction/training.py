"""Train the field ranker and the document-type model, and measure them honestly.

The labelled corpus comes from ``mlops.document_families``: every layout family, text PDFs and
scans (rendered, degraded and OCRed exactly as in production). It is generated in two pools
that share no label wording, title or font: the *training* pool and the *held-out* pool. Each
family is evaluated by a model trained without that family (leave-family-out folds) on held-out
documents of it, so every reported figure is on layouts, wordings, titles and fonts the model
never saw. The model that is saved is then trained on the whole training pool.

The confidence under which a field is left empty is chosen the same way: on training-pool
documents of each family scored by the model trained without it, the threshold that maximises
right values minus ``wrong_value_cost`` wrong ones. A model is less sure of itself on a layout it
has never seen, so a threshold fitted on the families it was trained on leaves right values out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from mlops import document_families as families
from mlops.errors import ConfigError
from mlops.extraction.candidates import FEATURE_NAMES, Lexicon, feature_table
from mlops.extraction.doctype import DocTypeModel
from mlops.extraction.evaluation import value_matches
from mlops.extraction.extractors import ExtractJob, read_layouts
from mlops.extraction.ranker import FieldRanker, design_row
from mlops.extraction.trained_models import ExtractorModels, save_models
from mlops.models import FIELD_NAMES, UNKNOWN_DOCUMENT_TYPE, DocumentFormat

log = logging.getLogger(__name__)
METRICS_FILENAME = "metrics.json"
TRAIN, HELD_OUT = "train", "held_out"
NON_LOAN = families.NON_LOAN_FAMILY
SCAN_KINDS = ("image_pdf", "png", "jpeg", "tiff")
FORMATS = {
    "text_pdf": DocumentFormat.PDF,
    "image_pdf": DocumentFormat.PDF,
    "png": DocumentFormat.PNG,
    "jpeg": DocumentFormat.JPEG,
    "tiff": DocumentFormat.TIFF,
}


@dataclass(frozen=True)
class TrainingPlan:
    seed: int
    text_documents: int  # per family, document type and pool
    scan_documents: int  # per family, document type and pool
    non_loan_documents: int  # per pool, half text, half scans
    folds: tuple[tuple[str, ...], ...]  # families held out together
    wrong_value_cost: float
    min_doctype_confidence: float
    ocr_dpi: int
    text_layer_min_chars: int
    day_first: bool = False
    tesseract_cmd: str | None = None


@dataclass(frozen=True)
class Spec:
    pool: str
    family: str  # or "non_loan"
    doc_type: str
    kind: str
    seed: str


@dataclass
class Sample:
    """One featurised document: its candidate rows, their labels, and what scoring needs."""

    spec: Spec
    fields: list[str]
    rows: np.ndarray
    positive: np.ndarray
    values: list[Any]
    truth: dict[str, Any]
    text: str
    doc_type: str
    pages: int = 0
    seconds: float = 0.0


def split(options: Sequence[str], seed: int, share: float = 1 / 3) -> tuple[list[str], list[str]]:
    """(training, held-out) partition of options, about ``share`` held out, stable per seed."""
    ranked = sorted(options, key=lambda option: hashlib.sha256(f"{seed}:{option}".encode()).hexdigest())
    cut = max(1, round(len(ranked) * share))
    return ranked[cut:], ranked[:cut]


def prose_groups() -> dict[object, list[str]]:
    """The letter sentence templates by the one field (and term style) they print; several fields: one group."""
    groups: dict[object, list[str]] = defaultdict(list)
    for fields, template, needs in families.LETTER_SENTENCES:
        groups[(fields[0], needs) if len(fields) == 1 else "several"].append(template)
    return groups


def restrictions(seed: int) -> dict[str, dict[str, Any]]:
    """Label wordings, titles, fonts and prose sentences per pool: the held-out pool uses none of
    the training ones (but for a sentence that is the only one printing its field)."""
    wordings = {name: split(options, seed) for name, options in families.WORDINGS.items()}
    titles = {doc_type: split(options, seed) for doc_type, options in families.TITLES.items()}
    fonts = split(families.FONTS, seed)
    sentences: tuple[list[str], list[str]] = ([], [])
    for group in prose_groups().values():
        # A field (in a term style) printed by one sentence only keeps it in both pools: letters
        # must be able to print every field.
        for pool, chosen in zip(sentences, split(group, seed) if len(group) > 1 else (group, group), strict=True):
            pool += chosen
    return {
        pool: {
            "wordings": {name: pair[index] for name, pair in wordings.items()},
            "titles": {doc_type: pair[index] for doc_type, pair in titles.items()},
            "fonts": fonts[index],
            "sentences": sentences[index],
        }
        for index, pool in enumerate((TRAIN, HELD_OUT))
    }


def plan_specs(plan: TrainingPlan) -> list[Spec]:
    specs = []
    for pool in (TRAIN, HELD_OUT):
        for family in families.FAMILIES:
            for doc_type in families.TITLES:
                for number in range(plan.text_documents):
                    specs.append(Spec(pool, family, doc_type, "text_pdf", f"{plan.seed}:{pool}:{family}:{doc_type}:t{number}"))
                for number in range(plan.scan_documents):
                    kind = SCAN_KINDS[(number + len(specs)) % len(SCAN_KINDS)]
                    specs.append(Spec(pool, family, doc_type, kind, f"{plan.seed}:{pool}:{family}:{doc_type}:s{number}"))
        for number in range(plan.non_loan_documents):
            kind = "text_pdf" if number % 2 == 0 else SCAN_KINDS[number % len(SCAN_KINDS)]
            specs.append(Spec(pool, NON_LOAN, UNKNOWN_DOCUMENT_TYPE, kind, f"{plan.seed}:{pool}:nonloan:{number}"))
    return specs


def featurise(spec: Spec, plan: TrainingPlan, lexicon: Lexicon) -> Sample:
    """Generate one document, read it like production does (text layer or OCR), featurise it."""
    if spec.family == NON_LOAN:
        data, row = families.non_loan_document(spec.kind, spec.seed)
    else:
        limits = restrictions(plan.seed)[spec.pool]
        data, row = families.family_document(spec.family, spec.doc_type, spec.kind, spec.seed, **limits)
    started = time.perf_counter()
    job = ExtractJob(
        sha256="",
        format=FORMATS[spec.kind],
        data=data,
        ocr_dpi=plan.ocr_dpi,
        text_layer_min_chars=plan.text_layer_min_chars,
        day_first=plan.day_first,
        tesseract_cmd=plan.tesseract_cmd,
    )
    layouts = list(read_layouts(job))
    table = feature_table(layouts, lexicon, plan.day_first)
    truth = {name: value for name, value in (row.get("fields") or {}).items() if value is not None}
    return Sample(
        spec=spec,
        fields=[name for name, _, _ in table],
        rows=np.array([design_row(name, features) for name, _, features in table], dtype=np.float32).reshape(
            len(table), len(FEATURE_NAMES) + len(FIELD_NAMES)
        ),
        positive=np.array(
            [name in truth and value_matches(name, candidate.value, truth[name]) for name, candidate, _ in table]
        ),
        values=[candidate.value for _, candidate, _ in table],
        truth=truth,
        text="\n".join(layout.text for layout in layouts),
        doc_type=row.get("doc_type") or UNKNOWN_DOCUMENT_TYPE,
        pages=len(layouts),
        seconds=time.perf_counter() - started,
    )


def fit(samples: Sequence[Sample], plan: TrainingPlan, lexicon: Lexicon, version: str) -> ExtractorModels:
    loan = [sample for sample in samples if len(sample.rows)]
    ranker = FieldRanker.train(
        np.vstack([sample.rows for sample in loan]),
        np.concatenate([sample.positive for sample in loan]),
        seed=plan.seed,
    )
    doctype = DocTypeModel.train(
        [sample.text for sample in samples],
        [sample.doc_type for sample in samples],
        min_confidence=plan.min_doctype_confidence,
    )
    return ExtractorModels(version, ranker, doctype, lexicon, features=FEATURE_NAMES)


@dataclass
class Score:
    """Field outcomes of a set of documents: right, wrong (a value that is not the truth),
    spurious (a value for a field the document does not have) and missing (no value where the
    document has one); wrong and spurious together are the wrong rate."""

    right: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    wrong: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    spurious: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    missing: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    doc_types_right: int = 0
    documents: int = 0

    def add(self, sample: Sample, doc_type: str, picked: dict[str, Any]) -> None:
        """One document's outcome: the type predicted for it and the field values picked from it."""
        self.documents += 1
        self.doc_types_right += doc_type == sample.doc_type
        for name in FIELD_NAMES:
            truth, value = sample.truth.get(name), picked.get(name)
            if truth is None:
                self.spurious[name] += value is not None
            elif value is None:
                self.missing[name] += 1
            elif value_matches(name, value, truth):
                self.right[name] += 1
            else:
                self.wrong[name] += 1

    def summary(self) -> dict[str, Any]:
        labelled = {name: self.right[name] + self.missing[name] + self.wrong[name] for name in FIELD_NAMES}
        total = sum(labelled.values())

        def rate(count: int) -> float | None:
            return round(count / total, 4) if total else None

        return {
            "documents": self.documents,
            "labelled_fields": total,
            "field_accuracy": rate(sum(self.right.values())),
            "wrong_rate": rate(sum(self.wrong.values()) + sum(self.spurious.values())),
            "missing_rate": rate(sum(self.missing.values())),
            "spurious_fields": sum(self.spurious.values()),
            "doc_type_accuracy": round(self.doc_types_right / max(self.documents, 1), 4),
            "fields": {
                name: round(self.right[name] / labelled[name], 4) for name in FIELD_NAMES if labelled[name]
            },
        }


def best_candidates(samples: Sequence[Sample], ranker: FieldRanker) -> list[dict[str, tuple[float, Any]]]:
    """Each document's highest-scoring candidate per field, (score, value), whatever the threshold;
    all scored in one call (the model's cost is mostly per call)."""
    scores = ranker.scores(np.vstack([sample.rows for sample in samples])) if samples else []
    found, start = [], 0
    for sample in samples:
        best: dict[str, tuple[float, Any]] = {}
        for name, value, score in zip(sample.fields, sample.values, scores[start : start + len(sample.rows)], strict=True):
            if score > best.get(name, (-1.0, None))[0]:
                best[name] = (float(score), value)
        found.append(best)
        start += len(sample.rows)
    return found


def top_picks(samples: Sequence[Sample], ranker: FieldRanker) -> list[tuple[float, bool]]:
    """(score, is the truth) of each field's best candidate in each document."""
    return [
        (score, name in sample.truth and value_matches(name, value, sample.truth[name]))
        for sample, best in zip(samples, best_candidates(samples, ranker), strict=True)
        for name, (score, value) in best.items()
    ]


def field_threshold(picks: Sequence[tuple[float, bool]], wrong_value_cost: float) -> float:
    """The score from which a field's best candidate is kept: the one that maximises right values
    minus ``wrong_value_cost`` times wrong ones over ``picks`` (:func:`top_picks`). Calibrated
    scores come in steps, so the threshold is one of them."""
    if not picks:
        return 0.5
    scores = np.array([score for score, _ in picks])
    gains = np.where([right for _, right in picks], 1.0, -wrong_value_cost)
    order = np.argsort(-scores, kind="stable")
    scores, totals = scores[order], np.cumsum(gains[order])
    cuts = np.append(scores[1:] != scores[:-1], True)  # between two different scores only
    best = int(np.argmax(np.where(cuts, totals, -np.inf)))
    return float(scores[best]) if totals[best] > 0 else float(np.nextafter(scores[0], np.inf))


def source_of(spec: Spec) -> str:
    if spec.family == NON_LOAN:
        return NON_LOAN
    return "text_pdf" if spec.kind == "text_pdf" else "scan"


def held_out_metrics(samples: Sequence[Sample], plan: TrainingPlan, lexicon: Lexicon) -> tuple[dict[str, Any], float]:
    """Leave-family-out: each fold's families scored by a model trained without them, with a field
    threshold chosen without them too (on the other folds' training-pool documents, each scored
    by its own fold's model). Also returns the threshold chosen on all of them, for the final model."""
    training = [sample for sample in samples if sample.spec.pool == TRAIN]
    held_out = [sample for sample in samples if sample.spec.pool == HELD_OUT]
    by_source: dict[str, Score] = defaultdict(Score)
    by_family: dict[str, Score] = defaultdict(Score)
    fold_models, unseen_picks = [], defaultdict(list)
    for fold in plan.folds:
        fold_models.append(fit([s for s in training if s.spec.family not in fold], plan, lexicon, "fold"))
        for family in fold:
            unseen_picks[family] = top_picks([s for s in training if s.spec.family == family], fold_models[-1].ranker)
    for fold, models in zip(plan.folds, fold_models, strict=True):
        others = [pick for family, picks in unseen_picks.items() if family not in fold for pick in picks]
        ranker = models.ranker
        ranker.min_confidence = field_threshold(others, plan.wrong_value_cost)
        scored = [s for s in held_out if s.spec.family in fold or (s.spec.family == NON_LOAN and fold == plan.folds[0])]
        doc_types = models.doctype.predict_many([sample.text for sample in scored])
        for sample, (doc_type, _), best in zip(scored, doc_types, best_candidates(scored, ranker), strict=True):
            picked = {name: value for name, (score, value) in best.items() if score >= ranker.min_confidence}
            by_source[source_of(sample.spec)].add(sample, doc_type, picked)
            by_family[sample.spec.family].add(sample, doc_type, picked)
    result = {source: score.summary() for source, score in sorted(by_source.items())}
    result["by_family"] = {family: score.summary() for family, score in sorted(by_family.items())}
    result["fold_field_thresholds"] = [round(models.ranker.min_confidence, 4) for models in fold_models]
    all_picks = [pick for picks in unseen_picks.values() for pick in picks]
    return result, field_threshold(all_picks, plan.wrong_value_cost)


def featurise_all(specs: Sequence[Spec], plan: TrainingPlan, lexicon: Lexicon, workers: int) -> list[Sample]:
    """Featurise in a process pool (OCR dominates: one single-threaded Tesseract per worker)."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(featurise, spec, plan, lexicon) for spec in specs]
        return [future.result() for future in tqdm(futures, desc="train_extractor", unit="doc", mininterval=5)]


def train(plan: TrainingPlan, lexicon: Lexicon, version: str, workers: int) -> tuple[ExtractorModels, dict[str, Any]]:
    """The model trained on the whole training pool, and its metrics (held-out figures first)."""
    started = time.perf_counter()
    specs = plan_specs(plan)
    samples = featurise_all(specs, plan, lexicon, workers)
    featurised = time.perf_counter()
    held_out, threshold = held_out_metrics(samples, plan, lexicon)
    metrics = {"held_out": held_out}
    models = fit([sample for sample in samples if sample.spec.pool == TRAIN], plan, lexicon, version)
    models.ranker.min_confidence = threshold
    finished = time.perf_counter()
    training = [sample for sample in samples if sample.spec.pool == TRAIN]
    models.training = metrics["training"] = {
        "documents": len(training),
        "held_out_documents": len(samples) - len(training),
        "families": list(families.FAMILIES),
        "folds": [list(fold) for fold in plan.folds],
        "candidate_rows": int(sum(len(sample.rows) for sample in training)),
        "seconds": {"corpus_and_features": round(featurised - started, 1), "fit": round(finished - featurised, 1)},
        "seed": plan.seed,
        "min_field_confidence": round(threshold, 4),
    }
    return models, metrics


def plan_from_settings(settings) -> TrainingPlan:
    train_settings = settings.train
    folded = {family for fold in train_settings.folds for family in fold}
    if folded != set(families.FAMILIES):
        raise ConfigError(
            f"train.folds: every layout family must be held out in exactly one fold; missing "
            f"{sorted(set(families.FAMILIES) - folded)}, unknown {sorted(folded - set(families.FAMILIES))}. "
            f"Families: {', '.join(families.FAMILIES)}"
        )
    return TrainingPlan(
        seed=train_settings.seed,
        text_documents=train_settings.text_documents,
        scan_documents=train_settings.scan_documents,
        non_loan_documents=train_settings.non_loan_documents,
        folds=tuple(tuple(fold) for fold in train_settings.folds),
        wrong_value_cost=train_settings.wrong_value_cost,
        min_doctype_confidence=train_settings.min_doctype_confidence,
        ocr_dpi=settings.extract.ocr_dpi,
        text_layer_min_chars=settings.preprocess.text_layer_min_chars,
        day_first=settings.extract.date_order == "day_first",
        tesseract_cmd=settings.extract.tesseract_cmd,
    )


def train_extractor(settings) -> dict[str, Any]:
    """Train, save the artifact named by the settings and its metrics.json beside it."""
    lexicon = Lexicon.load(settings.train.lexicon_file, settings.train.servicers_file)
    models, metrics = train(plan_from_settings(settings), lexicon, settings.extract.model_version, settings.workers)
    target = settings.extractor_model_file
    save_models(models, target)
    (target.parent / METRICS_FILENAME).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics


def held_out_table(metrics: dict[str, Any]) -> str:
    """The held-out accuracy table: per field, text PDFs and scans, then the document-level rates."""
    held_out = metrics["held_out"]
    sources = [source for source in ("text_pdf", "scan") if source in held_out]
    lines = [f"{'held-out families and wordings':32}" + "".join(f"{source:>10}" for source in sources)]
    for name in FIELD_NAMES:
        cells = "".join(f"{held_out[source]['fields'].get(name, float('nan')):>10.3f}" for source in sources)
        lines.append(f"{name:32}{cells}")
    for key in ("field_accuracy", "wrong_rate", "missing_rate", "doc_type_accuracy", "documents"):
        lines.append(f"{key:32}" + "".join(f"{held_out[source][key]:>10}" for source in sources))
    if NON_LOAN in held_out:
        non_loan = held_out[NON_LOAN]
        lines.append(
            f"non-loan forms called unknown: {non_loan['doc_type_accuracy']:.3f} of {non_loan['documents']}, "
            f"fields read from them: {non_loan['spurious_fields']}"
        )
    if threshold := metrics.get("training", {}).get("min_field_confidence"):
        lines.append(f"a field is kept from confidence {threshold} (chosen for train.wrong_value_cost on unseen families)")
    return "\n".join(lines)
