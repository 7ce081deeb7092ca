"""The extraction quality gate: one Great Expectations validation of the ``extractions`` table.

The suite lives in ``config/expectations/extractions.json`` in GX's own suite JSON, so it can be
edited by hand, opened by GX tooling, or regenerated from a baseline run.

Score: ``successful expectations / evaluated expectations`` -- GX's own ``success_percent`` / 100.
We use the expectation count, not a row-weighted rate, because each expectation already carries
its own tolerance (``mostly``), so a failed expectation is a breach beyond what we accept, and the
score then means the same thing for a batch of 10 documents and of 10,000 and matches the number
shown in Data Docs. Row-level detail is kept alongside: ``failing_rows``, ``row_pass`` and
``row_pass_rate`` name every document that broke any expectation, even one that passed overall
thanks to ``mostly``.

``import great_expectations`` costs ~2-3 s and ~200 MB, so it happens inside the functions, never
at module import (Airflow parses DAG files that import this package).
"""

from __future__ import annotations

import json
import tempfile
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlops.errors import ConfigError

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite

DATA_DOCS_SITE = "quality_gate"
DERIVED_YEAR_COLUMN = "disbursement_year"


class QualityStatus(StrEnum):
    PASSED = "PASSED"
    WARNING = "WARNING"
    FAILED = "FAILED"


class GateThresholds(BaseModel):
    """Score cut-offs: ``score >= passed`` is PASSED, ``>= warning`` is WARNING, else FAILED."""

    model_config = ConfigDict(frozen=True)

    passed: float = 0.95
    warning: float = 0.90

    @model_validator(mode="after")
    def _ordered(self) -> GateThresholds:
        if not 0.0 <= self.warning <= self.passed <= 1.0:
            raise ValueError(
                f"gate thresholds need 0 <= warning <= passed <= 1, got warning={self.warning}, "
                f"passed={self.passed}"
            )
        return self

    def status_for(self, score: float) -> QualityStatus:
        if score >= self.passed:
            return QualityStatus.PASSED
        if score >= self.warning:
            return QualityStatus.WARNING
        return QualityStatus.FAILED


class ExpectationOutcome(BaseModel):
    """One expectation's result, flattened from GX's ExpectationValidationResult."""

    type: str
    column: str | None
    success: bool
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.type}({self.column})" if self.column else self.type


class QualityResult(BaseModel):
    """What the gate decided and why; ``summary()`` is the JSON the report and the store keep."""

    suite_name: str
    status: QualityStatus
    score: float
    rows: int
    evaluated_expectations: int
    successful_expectations: int
    thresholds: GateThresholds
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


def load_suite(path: Path) -> ExpectationSuite:
    """Load a GX suite JSON file.

    GX's ExpectationSuite constructor logs and *drops* an invalid expectation; a gate silently
    missing a check is worse than a failed task, so each expectation is built first and the first
    bad one raises ConfigError naming the file, its position and type.
    """
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read expectation suite {path}: {exc}") from exc
    if not isinstance(data, dict) or not data.get("name") or not isinstance(data.get("expectations"), list):
        raise ConfigError(f"{path} is not a GX suite: it needs a 'name' and an 'expectations' list")
    for position, raw in enumerate(data["expectations"]):
        kind = raw.get("type") if isinstance(raw, dict) else None
        try:
            ExpectationConfiguration(**raw).to_domain_obj()
        except Exception as exc:  # GX raises many unrelated types for a bad config
            raise ConfigError(
                f"{path}: expectation #{position} ({kind or 'no type'}) is invalid: {exc}"
            ) from exc
    return gx.ExpectationSuite(**data)


def prepare_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame GX sees: positional index (to map unexpected indices back to rows) and the
    derived ``disbursement_year``, because GX 1.x cannot compare ISO date strings with a
    run-relative bound, but can compare an integer year with the ``as_of_year`` parameter."""
    prepared = frame.reset_index(drop=True).copy()
    if "disbursement_date" in prepared.columns:
        parsed = pd.to_datetime(prepared["disbursement_date"], format="%Y-%m-%d", errors="coerce")
        prepared[DERIVED_YEAR_COLUMN] = parsed.dt.year.astype("Int64")
    return prepared


def validate_extractions(
    frame: pd.DataFrame,
    suite_path: Path,
    *,
    thresholds: GateThresholds | None = None,
    data_docs_dir: Path | None = None,
    as_of: date | None = None,
) -> QualityResult:
    """Validate the extractions table against the suite: one GX validation per call.

    ``as_of`` is the run's logical date; disbursement years after its year fail the suite
    (without it the year has no upper bound -- this function never reads the clock).
    ``data_docs_dir``: build GX Data Docs (HTML) there; the index is ``result.data_docs_index``.
    The site's index lists this validation only (its validation store is a temporary directory),
    so give each run its own directory.

    An empty frame is "nothing to validate": PASSED, score 1.0, rows=0, GX not run.
    """
    thresholds = thresholds or GateThresholds()
    suite = load_suite(suite_path)
    if len(frame) == 0:
        return QualityResult(
            suite_name=suite.name,
            status=QualityStatus.PASSED,
            score=1.0,
            rows=0,
            evaluated_expectations=0,
            successful_expectations=0,
            thresholds=thresholds,
        )

    prepared = prepare_frame(frame)
    parameters = {"as_of_year": as_of.year if as_of else None}
    if data_docs_dir is None:
        validation = _run_checkpoint(prepared, suite, parameters, context_root=None, docs_dir=None)
        index = None
    else:
        docs_dir = Path(data_docs_dir).resolve()
        docs_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="gx-context-") as context_root:
            validation = _run_checkpoint(prepared, suite, parameters, Path(context_root), docs_dir)
        index = docs_dir / "index.html"
    return _to_result(validation, prepared, suite.name, thresholds, index)


def _run_checkpoint(
    prepared: pd.DataFrame,
    suite: ExpectationSuite,
    parameters: dict[str, Any],
    context_root: Path | None,
    docs_dir: Path | None,
) -> Any:
    """One checkpoint run. Ephemeral context unless Data Docs are wanted: they persist only
    from a file context, whose site we point at ``docs_dir``."""
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
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="extractions", data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="extraction_quality_gate",
            validation_definitions=[definition],
            actions=actions,
            result_format={"result_format": "COMPLETE"},
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": prepared}, expectation_parameters=parameters)
    return next(iter(run.run_results.values()))


def _to_result(
    validation: Any,
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
    for item in validation.results:
        config = item.expectation_config
        result = item.result or {}
        outcome = ExpectationOutcome(
            type=config.type,
            column=config.kwargs.get("column"),
            success=bool(item.success),
            unexpected_count=result.get("unexpected_count"),
            unexpected_percent=result.get("unexpected_percent"),
            error=_exception_message(item.exception_info),
        )
        outcomes.append(outcome)
        for position in result.get("unexpected_index_list") or []:
            labels = failing.setdefault(sha_by_position[int(position)], [])
            if outcome.label not in labels:
                labels.append(outcome.label)

    evaluated = len(outcomes)
    successful = sum(outcome.success for outcome in outcomes)
    score = successful / evaluated if evaluated else 1.0
    return QualityResult(
        suite_name=suite_name,
        status=thresholds.status_for(score),
        score=score,
        rows=len(prepared),
        evaluated_expectations=evaluated,
        successful_expectations=successful,
        thresholds=thresholds,
        expectations=outcomes,
        failing_rows=failing,
        row_pass={sha: sha not in failing for sha in sha_by_position},
        data_docs_index=index,
    )


def _exception_message(info: dict[str, Any] | None) -> str | None:
    """GX reports an expectation that raised (e.g. a missing column) either as one exception dict
    or as a dict of them keyed by metric."""
    if not info:
        return None
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [str(entry.get("exception_message")) for entry in entries if entry.get("raised_exception")]
    return "; ".join(messages) or None
