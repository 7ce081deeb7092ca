"""Run reports: run_summary.json's schema and the HTML report a person reads."""

from mlops.reporting.report import (
    PLOTLY_ASSET,
    RunSummary,
    plotly_asset,
    render_html,
    render_validation_html,
    summary_problems,
)

__all__ = ["PLOTLY_ASSET", "RunSummary", "plotly_asset", "render_html", "render_validation_html", "summary_problems"]
