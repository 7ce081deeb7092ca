"""The trained extractor: field ranker, document-type model and the lexicon they were trained with,
saved together as one versioned artifact (a DVC output of the ``train_extractor`` stage).

The pipeline loads the version named by ``extract.model_version`` from ``extract.model_dir``; a
missing artifact is a configuration error that names the command that builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import joblib

from mlops.errors import ConfigError
from mlops.extraction.candidates import FEATURE_NAMES, Lexicon
from mlops.extraction.doctype import DocTypeModel
from mlops.extraction.ranker import FieldRanker

BUILD_HINT = "build it with `make models` (or `dvc repro train_extractor`, or `python -m mlops train-extractor`)"


@dataclass
class ExtractorModels:
    version: str
    ranker: FieldRanker
    doctype: DocTypeModel
    lexicon: Lexicon
    training: dict = field(default_factory=dict)  # corpus size, families, seconds: for the record
    features: tuple[str, ...] = ()  # the candidate features the ranker was fitted on, in order


def save_models(models: ExtractorModels, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    joblib.dump(models, partial, compress=3)
    partial.replace(path)


@lru_cache(maxsize=2)
def load_models(path: str) -> ExtractorModels:
    """The artifact at ``path`` (cached per process: each worker loads it once)."""
    if not Path(path).is_file():
        raise ConfigError(
            f"extract.model_version: no trained extractor at {path}; {BUILD_HINT}, "
            "or set MLOPS_EXTRACT__MODEL_VERSION to a version that exists"
        )
    models = joblib.load(path)
    if not isinstance(models, ExtractorModels):
        raise ConfigError(f"extract.model_version: {path} is not an extractor artifact; {BUILD_HINT}")
    if getattr(models, "features", ()) != FEATURE_NAMES:  # older artifacts have no such field
        raise ConfigError(
            f"extract.model_version: {path} was trained on other candidate features than this code computes; "
            f"retrain it with `make models` (it replaces a stale artifact) or `dvc repro train_extractor`, "
            "or set MLOPS_EXTRACT__MODEL_VERSION to a new version"
        )
    return models
