"""The run report: one self-contained HTML page a person reads at a glance, and the schema of
run_summary.json it is drawn from.

The page must open on machines without internet, so plotly.js is inlined once in <head> and
every figure is embedded without it. Text taken from documents (file names, field values,
expectation arguments, anomaly reasons) reaches the page only through Jinja2 autoescaping, and
plotly escapes '<' in its figure JSON, so a document cannot put script into the report.
Sections whose stage did not run (their key is missing) render as "not run".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from jinja2 import Environment, PackageLoader
from markupsafe import Markup
from plotly.offline import get_plotlyjs
from pydantic import BaseModel, ConfigDict, ValidationError

from mlops.quality.bias import BiasThresholds

FUNNEL_STEPS: tuple[str, ...] = ("seen", "new", "skipped", "accepted", "quarantined", "duplicates")
FINDING_COLUMNS: tuple[str, ...] = ("document", "field", "value", "detector", "severity", "reason")
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


def render_html(summary: dict[str, Any], details: dict[str, Any] | None = None) -> str:
    """The HTML report for one run.

    ``details`` carries the tables: failing_expectations, findings, bias_flags, quarantined
    (lists of dicts / strings) and optionally bias_thresholds ({"max_difference": x}).
    """
    details = details or {}
    environment = Environment(
        loader=PackageLoader("mlops.reporting", "templates"), autoescape=True, trim_blocks=True
    )
    return environment.get_template("report.html.j2").render(
        plotlyjs=Markup(get_plotlyjs()),
        header=_header(summary),
        documents=_documents(summary, details),
        extraction=_extraction(summary.get("extraction")),
        validation=_validation(summary.get("validation"), details),
        anomalies=_anomalies(summary.get("anomalies"), details),
        bias=_bias(summary.get("bias"), details),
        stages=_stages(summary.get("stage_seconds")),
    )


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
    }


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


def _extraction(extraction: dict[str, Any] | None) -> dict[str, Any] | None:
    if extraction is None:
        return None
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
        figure = _bars(["score"], [score], status_colour(status), horizontal=True, height=180)
        for name, value in thresholds.items():
            figure.add_vline(x=value, line_dash="dash", line_color=GREY, annotation_text=f"{name} {value:g}")
        figure.update_xaxes(range=[0, scale])
        figure = _figure(figure)
    failing = details.get("failing_expectations") or []
    columns = tuple(dict.fromkeys(key for row in failing for key in row))
    return {
        "score": score,
        "status": status,
        "colour": status_colour(status),
        "thresholds": thresholds,
        "figure": figure,
        "failing": _rows(failing, columns),
        "failing_columns": columns,
    }


def _anomalies(anomalies: dict[str, Any] | None, details: dict[str, Any]) -> dict[str, Any] | None:
    if anomalies is None:
        return None
    by_detector = anomalies.get("by_detector") or {}
    findings = [
        {**finding, "document": finding.get("document") or finding.get("filename") or finding.get("sha256")}
        for finding in details.get("findings") or []
    ]
    return {
        "count": anomalies.get("count", sum(by_detector.values())),
        "figure": _figure(_bars(list(by_detector), list(by_detector.values()), AMBER))
        if by_detector
        else None,
        "findings": _rows(findings, FINDING_COLUMNS),
        "columns": FINDING_COLUMNS,
    }


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
        "limit": limit,
        "not_measurable": [dimension for dimension, value in bias.items() if value is None],
        "flags": [str(flag) for flag in details.get("bias_flags") or []],
    }


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


def _rows(rows: list[dict[str, Any]] | None, columns: tuple[str, ...]) -> list[list[str]]:
    """Table cells as plain strings; the template escapes them."""
    return [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows or []]
