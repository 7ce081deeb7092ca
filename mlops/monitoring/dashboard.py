"""The cross-run dashboard: one static page, ``reports/dashboard.html``, over the last N runs.

Verdict first (the last run's result and how many of the window failed), then per run: documents
(per run and per day of the runs' start), quarantine rate by reason, gate score against its
thresholds, field accuracy where labels exist, missing rate per field, anomalies by detector, drift
scores and a timeline of the stages, with a link to each run's report. Everything comes from the
metadata store (runs, metrics, findings, field statistics; stage timings and quarantine decisions
from the audit log) except ``drift.json``, which ``python -m mlops drift`` writes beside the run's
report. The monitoring DAG and ``python -m mlops monitor`` regenerate it, like every run's
``generate_reports``. Like the run report it opens offline: plotly.js is the shared asset under
``reports/assets/``; links are relative, so the folder can be copied or served as it is.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    started: datetime
    result: str  # the gate's verdict of a completed run, else its outcome (error, abandoned, running)
    documents: dict[str, int]
    score: float | None
    field_accuracy: float | None
    missing_rates: dict[str, float]
    anomalies: dict[str, int]
    stages: list[StageSpan]
    quarantine_reasons: dict[str, int]
    drift: Drift | None
    report: str | None  # link relative to the dashboard
    started_at: str = field(init=False)
    label: str = field(init=False)

    def __post_init__(self) -> None:
        self.started_at = f"{self.started:%Y-%m-%d %H:%M}"
        self.label = f"{self.started_at[5:16]} {self.run_id}"

    @property
    def stage_seconds(self) -> dict[str, float]:
        """Seconds per stage, mapped batches added up."""
        totals: Counter[str] = Counter()
        for span in self.stages:
            totals[span.stage] += span.seconds
        return dict(totals)

    @property
    def quarantine_rates(self) -> dict[str, float]:
        """Share of the run's new documents quarantined, per reason."""
        new = self.documents.get("new") or 0
        return {reason: count / new for reason, count in self.quarantine_reasons.items()} if new else {}


@dataclass
class StageSpan:
    """One stage (one batch of a mapped stage) on the run's timeline, in seconds from its first stage."""

    stage: str
    start: float
    seconds: float


@dataclass
class Drift:
    """A run's drift.json in brief: its verdict, how many fields drifted, and its score, the worst
    check's statistic over its threshold (above 1 and significant: drifted)."""

    verdict: str
    drifted_fields: int
    score: float | None
    worst: str


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
        events = metadata.events(run_id)
        rows.append(
            RunRow(
                run_id=run_id,
                started=_utc(run["started_at"]),
                result=run["verdict"]
                if run["outcome"] == RunOutcome.COMPLETED and run["verdict"]
                else run["outcome"],
                documents=run["counts"] or {},
                score=_number(metrics.get("validation.score")),
                field_accuracy=_number(metrics.get("extraction.field_accuracy")),
                missing_rates=statistics.get(run_id, {}),
                anomalies=dict(Counter(finding["detector"] for finding in metadata.findings(run_id))),
                stages=_stage_spans(events),
                quarantine_reasons=_quarantine_reasons(events),
                drift=_drift(store, f"{reports}/{run_id}/drift.json"),
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
        "Documents per day": _documents_per_day(rows),
        "Quarantine rate by reason": _stacked(rows, [row.quarantine_rates for row in rows], "share of new documents"),
        "Gate score": _scores(rows, thresholds),
        "Field accuracy (labelled runs)": _line(rows, [row.field_accuracy for row in rows], "field accuracy"),
        "Missing rate per field": _missing(rows),
        "Anomalies by detector": _stacked(rows, [row.anomalies for row in rows], "findings"),
        "Drift score (worst statistic / its threshold)": _drift_scores(rows),
        "Stage timeline": _timeline(rows),
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


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _stage_spans(events: list[dict[str, Any]]) -> list[StageSpan]:
    """The last attempt of each (stage, batch), from its stage_finished event: it ends when the
    event was written and lasted its ``seconds``. Offsets count from the earliest start."""
    last = {(event["stage"], event["details"].get("batch")): event
            for event in events if event["event"] == "stage_finished"}  # fmt: skip
    spans = [(stage, _utc(event["created_at"]).timestamp() - event["details"]["seconds"], event["details"]["seconds"])
             for (stage, _), event in last.items()]  # fmt: skip
    origin = min((start for _, start, _ in spans), default=0.0)
    return [StageSpan(stage, round(start - origin, 3), seconds) for stage, start, seconds in spans]


def _quarantine_reasons(events: list[dict[str, Any]]) -> dict[str, int]:
    """Quarantined documents per reason, one decision per document (a retried task may repeat it)."""
    decisions = {event["sha256"]: event["details"].get("reason", "unknown")
                 for event in events if event["event"] == "quarantined"}  # fmt: skip
    return dict(Counter(decisions.values()))


def _drift(store: ObjectStore, key: str) -> Drift | None:
    try:
        report = json.loads(store.get_bytes(key))
        scored = [check for check in report.get("checks", [])
                  if check.get("value") is not None and check.get("threshold")]  # fmt: skip
        worst = max(scored, key=lambda check: abs(check["value"]) / check["threshold"], default=None)
        return Drift(
            verdict=report["verdict"],
            drifted_fields=len({check["field"] for check in report.get("drifted", [])}),
            score=None if worst is None else round(abs(worst["value"]) / worst["threshold"], 3),
            worst="" if worst is None else f"{worst['field']} {worst['statistic']} {worst['value']:.3f}",
        )
    except (ObjectNotFound, ValueError, KeyError, TypeError, AttributeError):
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


def _documents_per_day(rows: list[RunRow]) -> go.Figure | None:
    """A bar per day of the runs' start, each run's documents stacked on it (a click opens that run)."""
    if not rows:
        return None
    days = [f"{row.started:%Y-%m-%d}" for row in rows]
    labels = [row.label for row in rows]
    figure = go.Figure(
        [
            go.Bar(name=kind, x=days, y=[row.documents.get(kind, 0) for row in rows], marker_color=colour,
                   customdata=labels, hovertemplate="%{x}: %{y} " + kind + "<br>run %{customdata}<extra></extra>")
            for kind, colour in DOCUMENT_COLOURS.items()
        ]
    )  # fmt: skip
    figure.update_layout(barmode="stack", height=320, yaxis_title="new documents",
                         legend={"orientation": "h", "y": 1.15})  # fmt: skip
    figure.update_xaxes(type="category", categoryorder="category ascending")
    return figure


def _drift_scores(rows: list[RunRow]) -> go.Figure | None:
    scored = [row for row in rows if row.drift and row.drift.score is not None]
    if not scored:
        return None
    figure = go.Figure(
        go.Scatter(
            x=[row.label for row in scored],
            y=[row.drift.score for row in scored],
            mode="markers",
            marker={"size": 10, "color": [RED if row.drift.verdict == "DRIFT" else GREEN for row in scored]},
            text=[f"{row.drift.verdict}: {row.drift.drifted_fields} drifted fields; worst {row.drift.worst}"
                  for row in scored],
            hovertemplate="%{text}<extra></extra>",
        )
    )  # fmt: skip
    figure.add_hline(y=1, line_dash="dash", line_color=RED, annotation_text="threshold")
    figure.update_yaxes(rangemode="tozero")
    return _layout(figure, scored, "score")


def _timeline(rows: list[RunRow]) -> go.Figure | None:
    """A Gantt row per run: each stage (each batch of a mapped stage) from its start to its end."""
    timed = [row for row in rows if row.stages]
    if not timed:
        return None
    stages = list(dict.fromkeys(span.stage for row in timed for span in row.stages))
    traces = []
    for stage in stages:
        spans = [(row, span) for row in timed for span in row.stages if span.stage == stage]
        traces.append(go.Bar(
            name=stage, orientation="h", y=[row.label for row, _ in spans], base=[span.start for _, span in spans],
            x=[span.seconds for _, span in spans], customdata=[row.label for row, _ in spans],
            text=[f"{stage}: {span.start:.1f}-{span.start + span.seconds:.1f} s" for _, span in spans],
            textposition="none", hovertemplate="%{text}<extra>%{customdata}</extra>",
        ))  # fmt: skip
    figure = go.Figure(traces)
    figure.update_layout(barmode="overlay", height=140 + 26 * len(timed), xaxis_title="seconds from the first stage",
                         legend={"orientation": "h", "y": -0.25})  # fmt: skip
    figure.update_yaxes(type="category", tickvals=[row.label for row in timed], autorange="reversed",
                        ticktext=[row.started_at[5:] for row in timed])  # fmt: skip
    return figure


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
