"""The extraction quality gate: one Great Expectations checkpoint over the ``extractions`` table.

Two suites run in that checkpoint:

- the hand-written suite in ``config/expectations/extractions.json`` (GX's own suite JSON, so it
  can be edited by hand, opened by GX tooling, or regenerated from a baseline run): plausible
  values, formats, one row per document. Its expectations have severity ``warning`` and are
  *scored*.
- the *critical* suite, generated here from ``mlops.models.REQUIRED_FIELDS`` and the gate's
  thresholds (never hand-copied into JSON, so a new document type or field is checked the day it
  is added to the model): for every document type, each field it carries is present in at least
  ``min_field_completeness`` of that type's documents; the mean confidence of the fields present
  is at least ``min_mean_confidence``; at least ``min_known_doc_type_share`` of the documents are
  of a known loan type. These say whether extraction worked at all: a batch of unfamiliar layouts
  can come back nearly empty yet break few value checks, so they are not averaged into a score.

Verdict: any failed expectation of severity ``critical`` (GX's own ``FailureSeverity``, whichever
suite it is in) makes the run FAILED, whatever the score. Otherwise the score maps to PASSED /
WARNING / FAILED by the thresholds.

Score: ``successful / evaluated`` over the non-critical expectations -- GX's ``success_percent`` /
100 of the hand-written suite, the number its Data Docs page shows. We use the expectation count,
not a row-weighted rate, because each expectation already carries its own tolerance (``mostly``),
so a failed expectation is a breach beyond what we accept, and the score then means the same
thing for a batch of 10 documents and of 10,000. Row-level detail is kept alongside:
``failing_rows``, ``row_pass`` and ``row_pass_rate`` name every document that broke any
expectation, even one that passed overall thanks to ``mostly``.

``import great_expectations`` costs ~2-3 s and ~200 MB, so it happens inside the functions, never
at module import (Airflow parses DAG files that import this package).
"""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlops.errors import ConfigError
from mlops.models import DOCUMENT_TYPES, FIELD_NAMES, REQUIRED_FIELDS, UNKNOWN_DOCUMENT_TYPE

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite

# GX logs ~200 INFO lines per checkpoint ("Skipping registering function ..."); the gate's own
# log line says what matters.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

DATA_DOCS_SITE = "quality_gate"
DERIVED_YEAR_COLUMN = "disbursement_year"
MEAN_CONFIDENCE_COLUMN = "mean_field_confidence"
CRITICAL = "critical"
"""GX's ``FailureSeverity.CRITICAL`` value: an expectation with this severity decides the run alone."""


class QualityStatus(StrEnum):
    PASSED = "PASSED"
    WARNING = "WARNING"
    FAILED = "FAILED"


class GateThresholds(BaseModel):
    """What the gate accepts. Score cut-offs: ``score >= passed`` is PASSED, ``>= warning`` is
    WARNING, else FAILED. The ``min_*`` values are the bounds of the critical expectations."""

    model_config = ConfigDict(frozen=True)

    passed: float = 0.95
    warning: float = 0.90
    min_field_completeness: float = Field(0.8, ge=0, le=1)
    min_mean_confidence: float = Field(0.6, ge=0, le=1)
    min_known_doc_type_share: float = Field(0.8, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> GateThresholds:
        if not 0.0 <= self.warning <= self.passed <= 1.0:
            raise ValueError(
                f"gate thresholds need 0 <= warning <= passed <= 1, got warning={self.warning}, "
                f"passed={self.passed}"
            )
        return self

    def status_for(self, score: float, critical_failures: int = 0) -> QualityStatus:
        if critical_failures:
            return QualityStatus.FAILED
        if score >= self.passed:
            return QualityStatus.PASSED
        if score >= self.warning:
            return QualityStatus.WARNING
        return QualityStatus.FAILED


class ExpectationOutcome(BaseModel):
    """One expectation's result, flattened from GX's ExpectationValidationResult.

    ``condition`` is the row condition in GX's own notation (``doc_type == billing_statement``);
    ``observed_value`` is kept when it is a number (a mean, a share), what aggregate
    expectations are judged on."""

    type: str
    column: str | None
    success: bool
    critical: bool = False
    condition: str | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    observed_value: float | None = None
    bounds: str | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        """``type(column)``, then `` where <condition>`` and `` [critical]`` when they apply: two
        expectations on the same column (a scored and a critical set check) stay apart."""
        label = f"{self.type}({self.column})" if self.column else self.type
        if self.condition:
            label = f"{label} where {self.condition}"
        return f"{label} [critical]" if self.critical else label


class QualityResult(BaseModel):
    """What the gate decided and why; ``summary()`` is the JSON the report and the store keep.

    ``evaluated_expectations`` / ``successful_expectations`` count the scored (non-critical)
    expectations; ``critical_failures`` names every critical one that failed."""

    suite_name: str
    status: QualityStatus
    score: float
    rows: int
    evaluated_expectations: int
    successful_expectations: int
    thresholds: GateThresholds
    critical_expectations: int = 0
    critical_failures: list[str] = Field(default_factory=list)
    expectations: list[ExpectationOutcome] = Field(default_factory=list)
    failing_rows: dict[str, list[str]] = Field(default_factory=dict)
    row_pass: dict[str, bool] = Field(default_factory=dict)
    data_docs_index: Path | None = None

    @property
    def row_pass_rate(self) -> float:
        return sum(self.row_pass.values()) / len(self.row_pass) if self.row_pass else 1.0

    def failed_expectations(self) -> list[ExpectationOutcome]:
        return [outcome for outcome in self.expectations if not outcome.success]

    def summary(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["row_pass_rate"] = self.row_pass_rate
        return data


def read_suite_file(path: Path) -> dict[str, Any]:
    """The suite file's JSON, checked for a name and an expectations list (no GX import)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read expectation suite {path}: {exc}") from exc
    if not isinstance(data, dict) or not data.get("name") or not isinstance(data.get("expectations"), list):
        raise ConfigError(f"{path} is not a GX suite: it needs a 'name' and an 'expectations' list")
    return data


def load_suite(path: Path) -> ExpectationSuite:
    """Load a GX suite JSON file.

    GX's ExpectationSuite constructor logs and *drops* an invalid expectation; a gate silently
    missing a check is worse than a failed task, so each expectation is built first and the first
    bad one raises ConfigError naming the file, its position and type.
    """
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    data = read_suite_file(path)
    for position, raw in enumerate(data["expectations"]):
        kind = raw.get("type") if isinstance(raw, dict) else None
        try:
            ExpectationConfiguration(**raw).to_domain_obj()
        except Exception as exc:  # GX raises many unrelated types for a bad config
            raise ConfigError(
                f"{path}: expectation #{position} ({kind or 'no type'}) is invalid: {exc}"
            ) from exc
    return gx.ExpectationSuite(**data)


def critical_suite(thresholds: GateThresholds, name: str = "extractions_critical") -> ExpectationSuite:
    """The critical expectations, generated from ``REQUIRED_FIELDS`` and the thresholds.

    Completeness is one ``not_null`` expectation per (document type, required field), restricted
    to that type's rows by a GX row condition: a type absent from the batch passes vacuously, and
    a field one type lacks is never demanded of it. Unclassified documents (``unknown``) carry no
    required fields; the known-type share is what catches a batch of them.
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    completeness = [
        gxe.ExpectColumnValuesToNotBeNull(
            column=field,
            mostly=thresholds.min_field_completeness,
            row_condition=Column("doc_type") == doc_type,
            severity=CRITICAL,
            notes=f"{doc_type} documents carry {field} (mlops.models.REQUIRED_FIELDS).",
        )
        for doc_type, fields in REQUIRED_FIELDS.items()
        for field in fields
    ]
    known_type = gxe.ExpectColumnValuesToBeInSet(
        column="doc_type",
        value_set=list(DOCUMENT_TYPES),
        mostly=thresholds.min_known_doc_type_share,
        severity=CRITICAL,
        notes=f"Documents the classifier could not type (null or '{UNKNOWN_DOCUMENT_TYPE}') are not loan "
        "documents it knows: their fields cannot be trusted.",
    )
    confidence = gxe.ExpectColumnMeanToBeBetween(
        column=MEAN_CONFIDENCE_COLUMN,
        min_value=thresholds.min_mean_confidence,
        severity=CRITICAL,
        notes="Per document, the mean confidence of the fields it has (derived by the gate); "
        "documents with no field are left out (completeness catches them).",
    )
    return gx.ExpectationSuite(name=name, expectations=[*completeness, known_type, confidence])


def prepare_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame GX sees: positional index (to map unexpected indices back to rows) and derived
    columns GX 1.x cannot compute itself:

    - ``disbursement_year``: GX cannot compare ISO date strings with a run-relative bound, but can
      compare an integer year with the ``as_of_year`` parameter;
    - ``mean_field_confidence``: per document, the mean ``<field>_confidence`` of the fields present
      (an absent field's confidence is 0 and says nothing about how sure the extractor was);
    - ``doc_type`` null becomes ``unknown``: both mean "not a type the classifier knows", and GX
      leaves nulls out of a set expectation's ``mostly``.
    """
    prepared = frame.reset_index(drop=True).copy()
    if "disbursement_date" in prepared.columns:
        parsed = pd.to_datetime(prepared["disbursement_date"], format="%Y-%m-%d", errors="coerce")
        prepared[DERIVED_YEAR_COLUMN] = parsed.dt.year.astype("Int64")
    fields = [name for name in FIELD_NAMES if {name, f"{name}_confidence"} <= set(prepared.columns)]
    if fields:
        present = prepared[fields].notna().to_numpy()
        confidences = prepared[[f"{name}_confidence" for name in fields]].astype(float)
        prepared[MEAN_CONFIDENCE_COLUMN] = confidences.where(present).mean(axis=1)
    if "doc_type" in prepared.columns:
        prepared["doc_type"] = prepared["doc_type"].astype("object").fillna(UNKNOWN_DOCUMENT_TYPE)
    return prepared


def validate_extractions(
    frame: pd.DataFrame,
    suite_path: Path,
    *,
    thresholds: GateThresholds | None = None,
    data_docs_dir: Path | None = None,
    as_of: date | None = None,
) -> QualityResult:
    """Validate the extractions table against the suite file and the critical suite: one GX
    checkpoint per call.

    ``as_of`` is the run's logical date; disbursement years after its year fail the suite
    (without it the year has no upper bound -- this function never reads the clock).
    ``data_docs_dir``: build GX Data Docs (HTML) there; the index is ``result.data_docs_index``.
    The site's index lists this validation only (its validation store is a temporary directory),
    so give each run its own directory.

    An empty frame is "nothing to validate": PASSED, score 1.0, rows=0, GX not run.
    """
    thresholds = thresholds or GateThresholds()
    if len(frame) == 0:  # a run with nothing new: no GX import (seconds) for nothing
        return QualityResult(
            suite_name=read_suite_file(suite_path)["name"],
            status=QualityStatus.PASSED,
            score=1.0,
            rows=0,
            evaluated_expectations=0,
            successful_expectations=0,
            thresholds=thresholds,
        )

    suite = load_suite(suite_path)
    prepared = prepare_frame(frame)
    suites = [suite, critical_suite(thresholds, name=f"{suite.name}_critical")]
    parameters = {"as_of_year": as_of.year if as_of else None}
    if data_docs_dir is None:
        validations = _run_checkpoint(prepared, suites, parameters, context_root=None, docs_dir=None)
        index = None
    else:
        docs_dir = Path(data_docs_dir).resolve()
        docs_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="gx-context-") as context_root:
            validations = _run_checkpoint(prepared, suites, parameters, Path(context_root), docs_dir)
        index = docs_dir / "index.html"
    return _to_result(validations, prepared, suite.name, thresholds, index)


def _run_checkpoint(
    prepared: pd.DataFrame,
    suites: list[ExpectationSuite],
    parameters: dict[str, Any],
    context_root: Path | None,
    docs_dir: Path | None,
) -> list[Any]:
    """One checkpoint run, one validation per suite. Ephemeral context unless Data Docs are
    wanted: they persist only from a file context, whose site we point at ``docs_dir``."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if context_root is None:
        context = gx.get_context(mode="ephemeral")
    else:
        context = gx.get_context(mode="file", project_root_dir=str(context_root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    actions = []
    if docs_dir is not None:
        context.add_data_docs_site(
            DATA_DOCS_SITE,
            {
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
            },
        )
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[DATA_DOCS_SITE]))

    asset = context.data_sources.add_pandas("extractions").add_dataframe_asset("extractions")
    batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")
    definitions = [
        context.validation_definitions.add(
            gx.ValidationDefinition(name=suite.name, data=batch_definition, suite=context.suites.add(suite))
        )
        for suite in suites
    ]
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="extraction_quality_gate",
            validation_definitions=definitions,
            actions=actions,
            result_format={"result_format": "COMPLETE"},
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": prepared}, expectation_parameters=parameters)
    return list(run.run_results.values())


def _to_result(
    validations: list[Any],
    prepared: pd.DataFrame,
    suite_name: str,
    thresholds: GateThresholds,
    index: Path | None,
) -> QualityResult:
    sha_by_position = [
        sha if isinstance(sha, str) and sha else f"<row {position}: no sha256>"
        for position, sha in enumerate(prepared.get("sha256", pd.Series([None] * len(prepared))))
    ]
    failing: dict[str, list[str]] = {}
    outcomes: list[ExpectationOutcome] = []
    for item in (item for validation in validations for item in validation.results):
        config = item.expectation_config
        result = item.result or {}
        outcome = ExpectationOutcome(
            type=config.type,
            column=config.kwargs.get("column"),
            success=bool(item.success),
            critical=config.severity == CRITICAL,
            condition=_condition_text(config.kwargs.get("row_condition")),
            unexpected_count=result.get("unexpected_count"),
            unexpected_percent=result.get("unexpected_percent"),
            observed_value=_number(result.get("observed_value")),
            bounds=_bounds_text(config.kwargs),
            error=_exception_message(item.exception_info),
        )
        outcomes.append(outcome)
        for position in result.get("unexpected_index_list") or []:
            labels = failing.setdefault(sha_by_position[int(position)], [])
            if outcome.label not in labels:
                labels.append(outcome.label)

    scored = [outcome for outcome in outcomes if not outcome.critical]
    critical_failures = [outcome.label for outcome in outcomes if outcome.critical and not outcome.success]
    successful = sum(outcome.success for outcome in scored)
    score = successful / len(scored) if scored else 1.0
    return QualityResult(
        suite_name=suite_name,
        status=thresholds.status_for(score, critical_failures=len(critical_failures)),
        score=score,
        rows=len(prepared),
        evaluated_expectations=len(scored),
        successful_expectations=successful,
        thresholds=thresholds,
        critical_expectations=len(outcomes) - len(scored),
        critical_failures=critical_failures,
        expectations=outcomes,
        failing_rows=failing,
        row_pass={sha: sha not in failing for sha in sha_by_position},
        data_docs_index=index,
    )


def _condition_text(row_condition: Any) -> str | None:
    """A row condition as GX writes it (its Condition ``repr``: ``doc_type == billing_statement``);
    legacy string conditions as they are."""
    from great_expectations.expectations.row_conditions import deserialize_row_condition

    condition = deserialize_row_condition(row_condition)
    if condition is None or isinstance(condition, str):
        return condition or None
    return repr(condition)


def _bounds_text(kwargs: dict[str, Any]) -> str | None:
    """What the expectation allows, for people: ``between 0 and 100``, ``one of a, b``, ``in >= 80% of rows``."""
    parts = []
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is not None and high is not None:
        parts.append(f"between {low:g} and {high:g}" if _number(low) is not None and _number(high) is not None
                     else f"between {low} and {high}")  # fmt: skip
    elif low is not None:
        parts.append(f">= {low}")
    elif high is not None:
        parts.append(f"<= {high}")
    if kwargs.get("value_set") is not None:
        values = [str(value) for value in kwargs["value_set"]]
        parts.append("one of " + ", ".join(values[:6]) + (f" and {len(values) - 6} more" if len(values) > 6 else ""))
    if kwargs.get("regex"):
        parts.append(f"matches {kwargs['regex']}")
    if kwargs.get("mostly") is not None and kwargs["mostly"] < 1:
        parts.append(f"in >= {kwargs['mostly']:.0%} of rows")
    return "; ".join(parts) or None


def _number(value: Any) -> float | None:
    """An observed value worth showing next to the expectation: a number (a mean), not a list."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _exception_message(info: dict[str, Any] | None) -> str | None:
    """GX reports an expectation that raised (e.g. a missing column) either as one exception dict
    or as a dict of them keyed by metric."""
    if not info:
        return None
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(entry.get("exception_message")) for entry in entries if entry.get("raised_exception")]
    return "; ".join(messages) or None
