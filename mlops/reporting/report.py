"""The run report: one self-contained HTML page a person reads at a glance, and the schema of
run_summary.json it is drawn from.

The page must open on machines without internet and stay small: plotly.js is one shared asset
beside the reports (``reports/assets/``, :data:`PLOTLY_ASSET`, loaded by a relative path) or,
for a page rendered on its own, inlined once in <head>; every figure is embedded without it. Text taken from documents (file names, field values,
expectation arguments, anomaly reasons) reaches the page only through Jinja2 autoescaping, and
plotly escapes '<' in its figure JSON, so a document cannot put script into the report.
Sections whose stage did not run (their key is missing) render as "not run".
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Self

import plotly
import plotly.graph_objects as go
import plotly.io as pio
from jinja2 import Environment, PackageLoader
from markupsafe import Markup
from plotly.offline import get_plotlyjs
from pydantic import BaseModel, ConfigDict, ValidationError

from mlops.quality.bias import BiasThresholds
from mlops.quality.expectations import ExpectationOutcome

FUNNEL_STEPS: tuple[str, ...] = ("seen", "new", "skipped", "accepted", "quarantined", "duplicates")
FINDING_COLUMNS: tuple[str, ...] = ("document", "field", "value", "detector", "severity", "reason")
EXPECTATION_COLUMNS: tuple[str, ...] = ("expectation", "column", "allows", "observed", "failing documents")
BIAS_METRICS: tuple[str, ...] = ("completeness", "field_accuracy", "mean_confidence", "validation_pass")
RUN_FACTS: tuple[tuple[str, str], ...] = (
    ("landing_prefix", "landing prefix"), ("pipeline_version", "pipeline version"),
    ("settings_fingerprint", "settings fingerprint"), ("params", "run parameters"),
)  # fmt: skip
PLOTLY_ASSET = f"assets/plotly-{plotly.__version__}.min.js"  # under the reports prefix
MAX_FILES_NAMED = 5
QUARANTINE_COLUMNS: tuple[str, ...] = ("filename", "reason", "detail")

GREEN, AMBER, RED, GREY, BLUE = "#2e7d32", "#ef6c00", "#c62828", "#757575", "#1565c0"
STATUS_COLOURS: dict[str, str] = {
    "success": GREEN, "succeeded": GREEN, "passed": GREEN, "pass": GREEN, "ok": GREEN,
    "warning": AMBER, "warn": AMBER, "degraded": AMBER, "partial": AMBER,
    "failed": RED, "fail": RED, "failure": RED, "error": RED,
}  # fmt: skip


class DocumentCounts(BaseModel):
    seen: int
    new: int
    skipped: int
    accepted: int
    quarantined: int
    duplicates: int


class ExtractionSummary(BaseModel):
    documents: int
    text_layer_pages: int
    ocr_pages: int
    accuracy: dict[str, dict[str, float | None]] | None = None  # {field: {text_layer: x, ocr: y}}


class ValidationSummary(BaseModel):
    score: float | None
    status: str
    thresholds: dict[str, float] | None = None  # {name: score the run must reach}


class AnomalySummary(BaseModel):
    count: int
    by_detector: dict[str, int] = {}


class RunSummary(BaseModel):
    """run_summary.json. Run identity and the document counts are required; a later stage's
    section is None when that stage did not run. Extra keys are kept for forward compatibility."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    status: str
    status_reasons: list[str] = []  # the sentences behind the status (gate verdict, no documents, error)
    error: dict[str, str] | None = None  # {task, message} of the task a failed run stopped at
    started_at: datetime
    finished_at: datetime
    documents: DocumentCounts
    quarantine_reasons: dict[str, int] = {}
    extraction: ExtractionSummary | None = None
    validation: ValidationSummary | None = None
    anomalies: AnomalySummary | None = None
    bias: dict[str, float | None] | None = None  # {dimension: max disparity}; None = not comparable
    stage_seconds: dict[str, float] = {}


def summary_problems(summary: dict[str, Any]) -> list[str]:
    """Human-readable schema problems of a run summary ("documents: Field required"); [] if valid."""
    try:
        RunSummary.model_validate(summary)
    except ValidationError as error:
        return [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in error.errors()]
    return []


def render_html(
    summary: dict[str, Any], details: dict[str, Any] | None = None, *, plotly_src: str | None = None
) -> str:
    """The HTML report for one run.

    ``details`` carries the tables: failing_expectations, failing_rows ({sha256: [expectation
    labels]}), files ({sha256: file name}), findings, bias_flags, bias_dimensions, quarantined
    and optionally bias_thresholds ({"max_difference": x}). ``plotly_src``: where the page loads
    plotly.js from (relative to the page); None inlines it.
    """
    details = details or {}
    return _environment().get_template("report.html.j2").render(
        plotlyjs=None if plotly_src else Markup(get_plotlyjs()),
        plotly_src=plotly_src,
        header=_header(summary),
        documents=_documents(summary, details),
        extraction=_extraction(summary.get("extraction")),
        validation=_validation(summary.get("validation"), details),
        anomalies=_anomalies(summary.get("anomalies"), details),
        bias=_bias(summary.get("bias"), details),
        stages=_stages(summary.get("stage_seconds")),
    )


def render_validation_html(run_id: str, validation: dict[str, Any], files: dict[str, str]) -> str:
    """The page behind the report's validation section: every expectation of the gate's suites,
    failed first, with what it allows, what was seen and which files broke it. It replaces GX's
    own Data Docs site, which loads its styling and scripts from public CDNs and a logo from
    GX's bucket, so it is blank offline and calls out when online."""
    details = {"files": files, "failing_rows": validation.get("failing_rows") or {}}
    outcomes = validation.get("expectations") or []
    rows = {
        success: [["critical" if o.get("critical") else "scored", *_expectation_row(o, details)]
                  for o in outcomes if bool(o.get("success")) is success]
        for success in (False, True)
    }  # fmt: skip
    thresholds = validation.get("thresholds") or {}
    status = str(validation.get("status", "unknown"))
    return _environment().get_template("validation.html.j2").render(
        run_id=run_id,
        status=status,
        colour=status_colour(status),
        rows=validation.get("rows", 0),
        suites=[validation.get("suite_name", "?"), f"{validation.get('suite_name', '?')}_critical"],
        score=f"{validation.get('score', 0):.2f}",
        passed=validation.get("successful_expectations", 0),
        scored=validation.get("evaluated_expectations", 0),
        thresholds={name: thresholds[name] for name in ("passed", "warning") if name in thresholds},
        critical=validation.get("critical_expectations", 0),
        critical_failed=len(validation.get("critical_failures") or []),
        columns=("kind", *EXPECTATION_COLUMNS),
        failed_rows=rows[False],
        passed_rows=rows[True],
    )


def _environment() -> Environment:
    return Environment(loader=PackageLoader("mlops.reporting", "templates"), autoescape=True, trim_blocks=True)


def plotly_asset() -> bytes:
    """The plotly.js every report loads from :data:`PLOTLY_ASSET`."""
    return get_plotlyjs().encode()


def status_colour(status: str | None) -> str:
    return STATUS_COLOURS.get(str(status or "").lower(), GREY)


def _header(summary: dict[str, Any]) -> dict[str, Any]:
    started, finished = summary.get("started_at"), summary.get("finished_at")
    return {
        "run_id": summary.get("run_id", "unknown run"),
        "status": summary.get("status", "unknown"),
        "colour": status_colour(summary.get("status")),
        "started_at": started or "-",
        "finished_at": finished or "-",
        "duration": _duration(started, finished),
        "reasons": summary.get("status_reasons") or [],
        "facts": {
            label: _fact(summary[key]) for key, label in RUN_FACTS if summary.get(key) not in (None, "", {})
        },
        "data_docs": (summary.get("validation") or {}).get("data_docs"),
        "airflow_run": (summary.get("links") or {}).get("airflow_run"),
    }


def _fact(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in value.items())
    return str(value)


def _duration(started: Any, finished: Any) -> str | None:
    try:
        seconds = (_timestamp(finished) - _timestamp(started)).total_seconds()
    except (TypeError, ValueError):
        return None
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _timestamp(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _documents(summary: dict[str, Any], details: dict[str, Any]) -> dict[str, Any] | None:
    counts = summary.get("documents")
    if counts is None:
        return None
    reasons = dict(sorted((summary.get("quarantine_reasons") or {}).items(), key=lambda kv: -kv[1]))
    funnel_colours = [GREY, BLUE, GREY, GREEN, RED, AMBER]
    return {
        "empty": _empty_run_sentence(counts),
        "counts": {step: counts.get(step, 0) for step in FUNNEL_STEPS},
        "funnel": _figure(
            _bars(list(FUNNEL_STEPS), [counts.get(s, 0) for s in FUNNEL_STEPS], funnel_colours)
        ),
        "reasons": _figure(_bars(list(reasons), list(reasons.values()), RED, horizontal=True))
        if reasons
        else None,
        "quarantined": _rows(details.get("quarantined"), QUARANTINE_COLUMNS),
        "quarantine_columns": QUARANTINE_COLUMNS,
    }


def _empty_run_sentence(counts: dict[str, int]) -> str | None:
    if not counts.get("seen"):
        return "No documents were found under the landing prefix: nothing was processed."
    if not counts.get("new"):
        return f"No new documents: all {counts['seen']} were processed by earlier runs."
    return None


def _extraction(extraction: dict[str, Any] | None) -> dict[str, Any] | None:
    if extraction is None:
        return None
    if not extraction.get("documents"):
        return {"documents": 0}
    pages = {"text layer": extraction.get("text_layer_pages", 0), "OCR": extraction.get("ocr_pages", 0)}
    accuracy = extraction.get("accuracy") or {}
    accuracy_figure = None
    if accuracy:
        sources = list(dict.fromkeys(source for by_source in accuracy.values() for source in by_source))
        figure = go.Figure(
            [
                go.Bar(name=source, x=list(accuracy), y=[accuracy[f].get(source) for f in accuracy])
                for source in sources
            ]
        )
        figure.update_layout(barmode="group", height=320, yaxis={"range": [0, 1], "title": "accuracy"})
        accuracy_figure = _figure(figure)
    return {
        "documents": extraction.get("documents", 0),
        "pages": pages,
        "pages_figure": _figure(_bars(list(pages), list(pages.values()), [GREEN, BLUE])),
        "accuracy_figure": accuracy_figure,
    }


def _validation(validation: dict[str, Any] | None, details: dict[str, Any]) -> dict[str, Any] | None:
    if validation is None:
        return None
    score, status = validation.get("score"), validation.get("status", "unknown")
    thresholds = validation.get("thresholds") or {}
    if not isinstance(thresholds, dict):
        thresholds = {"threshold": thresholds}
    figure = None
    if score is not None:
        scale = 100 if max([score, *thresholds.values()]) > 1 else 1
        figure = _bars(["score"], [score], status_colour(status), horizontal=True, height=200)
        for number, (name, value) in enumerate(sorted(thresholds.items(), key=lambda item: item[1])):
            position = "top left" if number % 2 == 0 else "bottom left"  # neighbours' labels do not overlap
            figure.add_vline(x=value, line_dash="dash", line_color=GREY, annotation_text=f"{name} {value:g}",
                             annotation_position=position)  # fmt: skip
        figure.update_xaxes(range=[0, scale])
        figure = _figure(figure)
    failing = details.get("failing_expectations") or []
    return {
        "score": f"{score:.2f}" if score is not None else "-",
        "status": status,
        "colour": status_colour(status),
        "thresholds": thresholds,
        "figure": figure,
        "data_docs": validation.get("data_docs"),
        "failing": [_expectation_row(outcome, details) for outcome in failing],
        "failing_columns": EXPECTATION_COLUMNS,
    }


def _expectation_row(outcome: dict[str, Any], details: dict[str, Any]) -> list[Any]:
    """One failing expectation as people read it: what, where, what it allows, what was seen, which files."""
    label = ExpectationOutcome.model_validate({"column": None, "success": False, **outcome}).label
    if outcome.get("error"):
        observed = f"error: {outcome['error']}"
    elif outcome.get("unexpected_count") is not None:
        count = outcome["unexpected_count"]
        observed = f"{count} row{'s' if count != 1 else ''}"
        if outcome.get("unexpected_percent") is not None:
            observed += f" ({outcome['unexpected_percent']:.1f}%)"
    elif outcome.get("observed_value") is not None:
        observed = f"{outcome['observed_value']:.3g}"
    else:
        observed = "-"
    files = details.get("files") or {}
    shas = [sha for sha, labels in (details.get("failing_rows") or {}).items() if label in labels]
    names = [files.get(sha, sha[:12]) for sha in shas[:MAX_FILES_NAMED]]
    more = f" and {len(shas) - MAX_FILES_NAMED} more" if len(shas) > MAX_FILES_NAMED else ""
    return [
        label,
        outcome.get("column") or "-",
        outcome.get("bounds") or "-",
        observed,
        ", ".join(names) + more or "-",
    ]


def _anomalies(anomalies: dict[str, Any] | None, details: dict[str, Any]) -> dict[str, Any] | None:
    if anomalies is None:
        return None
    by_detector = anomalies.get("by_detector") or {}
    files = details.get("files") or {}
    findings = [
        {**finding, "document": _document_cell(finding, files)} for finding in details.get("findings") or []
    ]
    return {
        "count": anomalies.get("count", sum(by_detector.values())),
        "figure": _figure(_bars(list(by_detector), list(by_detector.values()), AMBER))
        if by_detector
        else None,
        "findings": _rows(findings, FINDING_COLUMNS),
        "columns": FINDING_COLUMNS,
    }


def _document_cell(row: dict[str, Any], files: dict[str, str]) -> Cell:
    """The file name people know, the sha256 on hover."""
    sha = row.get("sha256")
    name = row.get("document") or row.get("filename") or files.get(sha or "") or (sha or "")[:12]
    return Cell(str(name), sha)


def _bias(bias: dict[str, Any] | None, details: dict[str, Any]) -> dict[str, Any] | None:
    if bias is None:
        return None
    limit = (details.get("bias_thresholds") or {}).get("max_difference", BiasThresholds().max_difference)
    measured = {dimension: value for dimension, value in bias.items() if value is not None}
    figure = None
    if measured:
        colours = [RED if value > limit else GREEN for value in measured.values()]
        figure = _bars(list(measured), list(measured.values()), colours)
        figure.add_hline(
            y=limit, line_dash="dash", line_color=RED, annotation_text=f"max difference {limit:g}"
        )
        figure.update_yaxes(range=[0, max(1.0, *measured.values())], title="max disparity")
        figure = _figure(figure)
    return {
        "figure": figure,
        "groups": _bias_groups(details.get("bias_dimensions") or {}),
        "metrics": BIAS_METRICS,
        "limit": limit,
        "not_measurable": [dimension for dimension, value in bias.items() if value is None],
        "flags": [str(flag) for flag in details.get("bias_flags") or []],
    }


def _bias_groups(dimensions: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """Per dimension, one row per group: its size and each metric's value; a flagged metric's
    values are marked so the groups that differ stand out."""
    tables: dict[str, list[list[Any]]] = {}
    for dimension, result in dimensions.items():
        metrics = result.get("metrics") or {}
        groups = list(dict.fromkeys(g for metric in metrics.values() for g in (metric.get("by_group") or {})))
        rows = []
        for group in groups:
            size = next(
                (m["group_sizes"][group] for m in metrics.values() if group in (m.get("group_sizes") or {})),
                "",
            )
            row: list[Any] = [str(group), str(size)]
            for name in BIAS_METRICS:
                metric = metrics.get(name) or {}
                value = (metric.get("by_group") or {}).get(group)
                text = "-" if value is None else f"{value:.2f}"
                row.append(Cell(text, "differs beyond the threshold" if metric.get("flagged") else None,
                                flagged=bool(metric.get("flagged"))))  # fmt: skip
            rows.append(row)
        if rows:
            tables[dimension] = rows
    return tables


def _stages(stage_seconds: dict[str, float] | None) -> dict[str, Any] | None:
    if not stage_seconds:
        return None
    stages = list(stage_seconds)
    figure = _bars(stages, list(stage_seconds.values()), BLUE, horizontal=True, height=60 + 30 * len(stages))
    figure.update_yaxes(autorange="reversed")
    figure.update_xaxes(title="seconds")
    return {"figure": _figure(figure), "total": round(sum(stage_seconds.values()), 1)}


def _bars(
    labels: list[str],
    values: list[Any],
    colours: str | list[str],
    horizontal: bool = False,
    height: int = 300,
) -> go.Figure:
    text = [f"{v:.3g}" if isinstance(v, float) else v for v in values]
    bar = (
        go.Bar(y=labels, x=values, orientation="h", marker_color=colours, text=text)
        if horizontal
        else go.Bar(x=labels, y=values, marker_color=colours, text=text)
    )
    figure = go.Figure(bar)
    figure.update_layout(height=height)
    return figure


def _figure(figure: go.Figure) -> Markup:
    """A figure's <div>; plotly.js itself is already on the page (see the template's <head>)."""
    figure.update_layout(template="plotly_white", margin={"l": 40, "r": 20, "t": 30, "b": 40})
    html = pio.to_html(
        figure, include_plotlyjs=False, full_html=False, config={"displaylogo": False, "responsive": True}
    )
    return Markup(html)


class Cell(str):
    """A table cell's text with a hover title (and a flag the template highlights)."""

    hover: str | None
    flagged: bool

    def __new__(cls, text: str, hover: str | None = None, flagged: bool = False) -> Self:
        cell = super().__new__(cls, text)
        cell.hover, cell.flagged = hover, flagged
        return cell


def _rows(rows: list[dict[str, Any]] | None, columns: tuple[str, ...]) -> list[list[str]]:
    """Table cells as strings (Cell where they carry a title); the template escapes them."""
    return [
        [row[c] if isinstance(row.get(c), Cell) else _text(row.get(c)) for c in columns] for row in rows or []
    ]


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
