"""
### Bias detection across runs

Every week, `assess_bias_window` pools the per-document quality table of the loan-document
pipeline's recent runs (each run's `check_bias` stage saves it) over a window of runs
(`bias.window_runs` completed runs, or `bias.window_days` days) and compares document types,
servicers, file formats, page-count buckets and scan-quality buckets with fairlearn's
`MetricFrame`: field accuracy where labels exist, completeness and confidence always, each with
bootstrap confidence intervals. A slice with fewer than `bias.window_min_documents` documents is
reported as *not enough evidence* and never flagged; a disparity is flagged only when its whole
interval breaches `bias.max_difference` / `bias.min_ratio`.

**Output**: `reports/bias/<date>/bias_report.html` and `bias_report.json`, with a mitigation note
per flagged slice (which slice, what to retrain or re-scan). The task's log line leads with the
verdict. It only reads the metadata store and run outputs (no run lease). The same from a shell:
`python -m mlops bias-window`. Logic lives in `mlops.monitoring.bias_window`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task


@task(task_id="assess_bias_window", doc_md="MetricFrame over the window's documents; writes reports/bias/<date>/.")
def assess_bias_window(**context):
    import logging

    from mlops.monitoring.bias_window import run_bias_window

    report = run_bias_window(context["dag_run"].run_after)
    logging.getLogger("mlops.monitoring").info("%s | report: %s", report["headline"], report["report"])
    return {"verdict": report["verdict"], "flagged": len(report["flagged"]), "report": report["report"]}


@dag(
    dag_id="bias_detection_pipeline",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["loan-documents", "mlops", "monitoring"],
    default_args={
        "owner": "mlops",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=1),
    },
)
def bias_detection_pipeline():
    assess_bias_window()


bias_detection_pipeline()
