"""
### Data quality monitoring

Every hour, looks across the loan-document pipeline's runs (it only reads: it never takes the
pipeline's run lease, so it runs beside a pipeline run):

`check_landing_freshness` (age of the newest object in the landing area),
`check_results_freshness` (hours since the newest completed run), `check_drift` (the newest
completed run's drift against its baseline of good runs), `check_anomaly_trend` (share of
documents with anomaly findings over the last `monitoring.trend_runs` runs) →
`publish_monitoring_report` → `refresh_dashboard` → `monitoring_verdict`.

`publish_monitoring_report` evaluates the monitoring rules of `config/alert_rules.yaml`
(`freshness`, `results_freshness`, `drift`, `anomaly_rate`), sends what fires to the alert
channels at most once per rule per `monitoring.alert_window_hours`, and writes
`reports/monitoring/<time>.json` and `reports/monitoring/latest.json`. `monitoring_verdict` then
**fails** the run when a rule fired, so the grid shows it; its log line says which and why.
`refresh_dashboard` regenerates the cross-run dashboard `reports/dashboard.html` first, so an
ALERT run refreshes it too.
The same checks run from the command line: `python -m mlops monitor`. Logic lives in
`mlops.monitoring.checks`; this file only wires it.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

CHECK_TASKS = {
    "landing": ("check_landing_freshness", "Age of the newest object in the landing area (names in landing_ignore left out)."),
    "results": ("check_results_freshness", "Hours since the newest completed pipeline run finished."),
    "drift": ("check_drift", "Drift verdict of the newest completed run against its baseline (mlops.monitoring.drift)."),
    "anomaly_trend": ("check_anomaly_trend", "Share of documents with anomaly findings over the last monitoring.trend_runs runs."),
}


def _check_task(name: str):
    task_id, doc = CHECK_TASKS[name]

    def check(**context):
        from mlops.monitoring.checks import run_check

        return run_check(name, context["dag_run"].run_after)

    return task(check, task_id=task_id, doc_md=doc)


@task(task_id="publish_monitoring_report", doc_md="Verdict, alerts (once per rule per window), reports/monitoring/.")
def publish_monitoring_report(landing: dict, results: dict, drift: dict, anomaly_trend: dict, **context):
    from mlops.monitoring.checks import publish

    report = publish({"landing": landing, "results": results, "drift": drift, "anomaly_trend": anomaly_trend},
                     context["dag_run"].run_after)  # fmt: skip
    return {"verdict": report["verdict"], "verdict_line": report["verdict_line"], "report": report["report"]}


@task(task_id="refresh_dashboard", doc_md="Regenerates reports/dashboard.html over the last runs (mlops.monitoring.dashboard).")
def refresh_dashboard():
    from mlops.monitoring.checks import refresh_dashboard as regenerate

    return regenerate()["dashboard"]


@task(task_id="monitoring_verdict", retries=0, doc_md="Fails the run when a monitoring rule fired; logs why.")
def monitoring_verdict(outcome: dict):
    import logging

    from airflow.sdk.exceptions import AirflowFailException

    line = f"{outcome['verdict_line']} | report: {outcome['report']}"
    if outcome["verdict"] != "OK":
        raise AirflowFailException(line)
    logging.getLogger("mlops.monitoring").info(line)


@dag(
    dag_id="data_quality_monitoring",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["loan-documents", "mlops", "monitoring"],
    default_args={
        "owner": "mlops",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=5),
        "execution_timeout": timedelta(minutes=30),
    },
)
def data_quality_monitoring():
    checks = {name: _check_task(name)() for name in CHECK_TASKS}
    outcome = publish_monitoring_report(**checks)
    outcome >> refresh_dashboard() >> monitoring_verdict(outcome)


data_quality_monitoring()
