"""The cross-run dashboard: one static page, ``reports/dashboard.html``, over the last N runs.

Verdict first (the last run's result and how many of the window failed), then per run: documents,
gate score against its thresholds, field accuracy where labels exist, missing rate per field,
anomalies by detector, stage durations and the drift verdict, with a link to each run's report.
Everything comes from the metadata store (runs, metrics, findings, field statistics, stage
timings in the audit log) except ``drift.json``, which ``python -m mlops drift`` writes beside
the run's report. Like the run report it opens offline: plotly.js is the shared asset under
``reports/assets/``; links are relative, so the folder can be copied or served as it is.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go

from mlops.errors import ObjectNotFound
from mlops.models import FIELD_NAMES, RunOutcome, RunVerdict
from mlops.reporting.report import (
    AMBER,
    BLUE,
    GREEN,
    PLOTLY_ASSET,
    RED,
    _environment,
    _figure,
    plotly_asset,
    status_colour,
)

if TYPE_CHECKING:
    from mlops.config import Settings
    from mlops.io.metadata import MetadataStore
    from mlops.io.objects import ObjectStore

DASHBOARD = "dashboard.html"  # under the reports prefix, beside the runs' folders
DEFAULT_RUNS = 20
FAILED_RESULTS = {RunVerdict.FAILED.value, RunOutcome.ERROR.value, RunOutcome.ABANDONED.value}
DOCUMENT_COLOURS = {"accepted": GREEN, "quarantined": RED, "duplicates": AMBER}


@dataclass
class RunRow:
    """One run as the dashboard shows it."""

    run_id: str
    started_at: str
    result: str  # the gate's verdict of a completed run, else its outcome (error, abandoned, running)
    documents: dict[str, int]
    score: float | None
    field_accuracy: float | None
    missing_rates: dict[str, float]
    anomalies: dict[str, int]
    stage_seconds: dict[str, float]
    drift: str | None
    report: str | None  # link relative to the dashboard
    label: str = field(init=False)

    def __post_init__(self) -> None:
        self.label = f"{self.started_at[5:16]} {self.run_id}"


def collect(store: ObjectStore, metadata: MetadataStore, settings: Settings, runs: int) -> list[RunRow]:
    """The last ``runs`` runs by start time, oldest first."""
    reports = settings.prefixes.reports
    chosen = metadata.runs()[-runs:]
    statistics: dict[str, dict[str, float]] = {}
    for row in metadata.field_statistics([run["run_id"] for run in chosen]):
        if row["field"] in FIELD_NAMES:
            statistics.setdefault(row["run_id"], {})[row["field"]] = row["missing_rate"]
    rows = []
    for run in chosen:
        run_id = run["run_id"]
        metrics = metadata.metrics(run_id)
        rows.append(
            RunRow(
                run_id=run_id,
                started_at=run["started_at"].strftime("%Y-%m-%d %H:%M"),
                result=run["verdict"]
                if run["outcome"] == RunOutcome.COMPLETED and run["verdict"]
                else run["outcome"],
                documents=run["counts"] or {},
                score=_number(metrics.get("validation.score")),
                field_accuracy=_number(metrics.get("extraction.field_accuracy")),
                missing_rates=statistics.get(run_id, {}),
                anomalies=dict(Counter(finding["detector"] for finding in metadata.findings(run_id))),
                stage_seconds=_stage_seconds(metadata, run_id),
                drift=_drift_verdict(store, f"{reports}/{run_id}/drift.json"),
                report=f"{run_id}/report.html" if store.exists(f"{reports}/{run_id}/report.html") else None,
            )
        )
    return rows


def headline(rows: list[RunRow]) -> str:
    if not rows:
        return "No runs yet"
    failed = sum(row.result in FAILED_RESULTS for row in rows)
    return f"Last run {rows[-1].result.upper()} · {failed} of the last {len(rows)} runs failed"


def render_dashboard(rows: list[RunRow], settings: Settings, plotly_src: str | None = None) -> str:
    thresholds = {"passed": settings.quality.passed_threshold, "warning": settings.quality.warning_threshold}
    charts = {
        "Documents": _documents(rows),
        "Gate score": _scores(rows, thresholds),
        "Field accuracy (labelled runs)": _line(rows, [row.field_accuracy for row in rows], "field accuracy"),
        "Missing rate per field": _missing(rows),
        "Anomalies by detector": _stacked(rows, [row.anomalies for row in rows], "findings"),
        "Stage durations": _stacked(rows, [row.stage_seconds for row in rows], "seconds"),
    }
    template = _environment().get_template("dashboard.html.j2")
    return template.render(
        headline=headline(rows),
        colour=status_colour(rows[-1].result) if rows else None,
        plotly_src=plotly_src,
        charts={title: _figure(figure) for title, figure in charts.items() if figure is not None},
        rows=list(reversed(rows)),
        colours={row.run_id: status_colour(row.result) for row in rows},
        reports={row.label: row.report for row in rows if row.report},
    )


def write_dashboard(
    store: ObjectStore, metadata: MetadataStore, settings: Settings, runs: int = DEFAULT_RUNS
) -> dict[str, Any]:
    """Regenerate ``reports/dashboard.html``; return its headline and location."""
    reports = settings.prefixes.reports
    if not store.exists(f"{reports}/{PLOTLY_ASSET}"):
        store.put_bytes(f"{reports}/{PLOTLY_ASSET}", plotly_asset(), content_type="text/javascript")
    rows = collect(store, metadata, settings, runs)
    html = render_dashboard(rows, settings, plotly_src=PLOTLY_ASSET)
    store.put_bytes(f"{reports}/{DASHBOARD}", html.encode(), content_type="text/html")
    return {"headline": headline(rows), "runs": len(rows), "dashboard": store.uri(f"{reports}/{DASHBOARD}")}


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value  # a NULL metric comes back as NaN


def _stage_seconds(metadata: MetadataStore, run_id: str) -> dict[str, float]:
    """Seconds per stage: the last attempt of each (stage, batch), batches added up."""
    last = {(event["stage"], event["details"].get("batch")): event["details"]["seconds"]
            for event in metadata.events(run_id, event="stage_finished")}  # fmt: skip
    totals: Counter[str] = Counter()
    for (stage, _), seconds in last.items():
        totals[stage] += seconds
    return dict(totals)


def _drift_verdict(store: ObjectStore, key: str) -> str | None:
    try:
        return json.loads(store.get_bytes(key))["verdict"]
    except (ObjectNotFound, ValueError, KeyError, TypeError):
        return None


def _layout(figure: go.Figure, rows: list[RunRow], title: str, height: int = 320) -> go.Figure:
    """Runs on a category axis (two runs may start in the same minute) ticked by start time."""
    figure.update_layout(height=height, yaxis_title=title, legend={"orientation": "h", "y": 1.15})
    ticks = [row.started_at[5:] for row in rows]
    figure.update_xaxes(type="category", tickvals=[row.label for row in rows], ticktext=ticks, tickangle=-45)
    return figure


def _documents(rows: list[RunRow]) -> go.Figure | None:
    if not rows:
        return None
    labels = [row.label for row in rows]
    figure = go.Figure(
        [
            go.Bar(name=kind, x=labels, y=[row.documents.get(kind, 0) for row in rows], marker_color=colour)
            for kind, colour in DOCUMENT_COLOURS.items()
        ]
    )
    figure.update_layout(barmode="stack")
    return _layout(figure, rows, "new documents")


def _scores(rows: list[RunRow], thresholds: dict[str, float]) -> go.Figure | None:
    figure = _line(rows, [row.score for row in rows], "gate score")
    if figure is not None:
        for (name, value), position in zip(thresholds.items(), ("top right", "bottom right"), strict=True):
            figure.add_hline(y=value, line_dash="dash", line_color=status_colour(name), annotation_text=name,
                             annotation_position=position)  # fmt: skip
    return figure


def _line(rows: list[RunRow], values: list[float | None], title: str) -> go.Figure | None:
    if all(value is None for value in values):
        return None
    figure = go.Figure(
        go.Scatter(x=[row.label for row in rows], y=values, mode="lines+markers", marker_color=BLUE)
    )
    figure.update_yaxes(range=[0, 1.05])
    return _layout(figure, rows, title)


def _missing(rows: list[RunRow]) -> go.Figure | None:
    with_statistics = [row for row in rows if row.missing_rates]
    if not with_statistics:
        return None
    fields = [name for name in FIELD_NAMES if any(name in row.missing_rates for row in with_statistics)]
    figure = go.Figure(
        go.Heatmap(
            x=[row.label for row in with_statistics],
            y=fields,
            z=[[row.missing_rates.get(name) for row in with_statistics] for name in fields],
            zmin=0,
            zmax=1,
            colorscale="Reds",
            colorbar={"title": "missing"},
        )
    )
    figure = _layout(figure, with_statistics, "", height=120 + 28 * len(fields))
    figure.update_yaxes(autorange="reversed")
    return figure


def _stacked(rows: list[RunRow], values: list[dict[str, float]], title: str) -> go.Figure | None:
    names = list(dict.fromkeys(name for value in values for name in value))
    if not names:
        return None
    labels = [row.label for row in rows]
    figure = go.Figure(
        [go.Bar(name=name, x=labels, y=[value.get(name, 0) for value in values]) for name in names]
    )
    figure.update_layout(barmode="stack")
    return _layout(figure, rows, title)
