"""Run reports: run_summary.json's schema and the self-contained HTML report a person reads."""

from mlops.reporting.report import RunSummary, render_html, summary_problems

__all__ = ["RunSummary", "render_html", "summary_problems"]
