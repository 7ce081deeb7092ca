"""The DAGs ops engineers see: they import cleanly and fast; the pipeline has the nine tasks in
order, and each DAG the schedule, retries, params and docs the UI shows."""

import copy
import itertools
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from airflow.sdk.exceptions import ParamValidationError

from mlops.stages import STAGE_NAMES

DAG_ID = "document_processing_pipeline"
GATE = "quality_gate"


MONITORING_DAG_ID = "data_quality_monitoring"
MONITORING_CHECKS = ("check_landing_freshness", "check_results_freshness", "check_drift", "check_anomaly_trend")


@pytest.fixture(scope="module")
def bag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag()
    assert bag.import_errors == {}
    return bag


@pytest.fixture(scope="module")
def dag(bag):
    return bag.dags[DAG_ID]


def test_nine_tasks_in_pipeline_order_then_the_quality_gate(dag):
    assert set(dag.task_ids) == {*STAGE_NAMES, GATE}
    for upstream, downstream in itertools.pairwise([*STAGE_NAMES, GATE]):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}


def test_quality_gate_is_never_retried_and_leaves_the_report_alone(dag):
    """A verdict does not change on a retry; its failure must not overwrite the report it judges."""
    gate = dag.get_task(GATE)
    assert gate.retries == 0
    assert not gate.on_failure_callback and not gate.on_retry_callback
    assert gate.doc_md


def test_daily_without_catchup_with_backoff_retries_and_timeouts(dag):
    assert dag.schedule == "@daily"
    assert dag.catchup is False
    for task in dag.tasks:
        if task.task_id == GATE:
            continue
        assert task.retries >= 2
        assert task.retry_exponential_backoff
        assert task.execution_timeout and task.execution_timeout <= timedelta(hours=4)
        assert task.on_failure_callback and task.on_retry_callback
        assert task.doc_md


def test_extraction_fans_out_over_batches(dag):
    assert dag.get_task("extract_data").is_mapped
    assert not any(dag.get_task(name).is_mapped for name in STAGE_NAMES if name != "extract_data")


def test_trigger_form_params_and_docs(dag):
    assert set(dag.params) == {"landing_prefix", "max_documents", "reprocess"}
    assert dag.params["reprocess"] is False
    assert dag.params["landing_prefix"] is None  # the configured prefixes.landing
    assert "quarantine" in dag.doc_md and "gate.fail_run_on" in dag.doc_md


@pytest.mark.parametrize("prefix", ["landing", "landing/2026-01", "landing/2026-01/", "in_box-2.b", None])
def test_trigger_form_accepts_relative_prefixes(dag, prefix):
    params = copy.deepcopy(dag.params)
    params["landing_prefix"] = prefix
    assert params["landing_prefix"] == prefix


@pytest.mark.parametrize("prefix", ["/", "", "/landing", "../landing", "landing/../raw", "a//b", ".hidden", "a b"])
def test_trigger_form_refuses_a_bad_prefix_before_the_run_starts(dag, prefix):
    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError, match="landing_prefix"):
        params["landing_prefix"] = prefix


@pytest.mark.parametrize(("name", "value"), [("max_documents", -1), ("max_documents", "ten"), ("reprocess", "yes")])
def test_trigger_form_refuses_values_of_the_wrong_kind(dag, name, value):
    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError, match=name):
        params[name] = value


@pytest.mark.parametrize("dag_file", ["document_processing_pipeline", MONITORING_DAG_ID, "bias_detection_pipeline"])
def test_dag_file_imports_fast_without_the_platform(dag_file):
    """Wiring only: the scheduler parses these files often, so they must not import mlops or GX."""
    code = (
        "import sys, time; t = time.time();"
        f"import runpy; runpy.run_path('dags/{dag_file}.py');"
        "print(time.time() - t); print('mlops' in sys.modules, 'great_expectations' in sys.modules)"
    )
    started = time.time()
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert output[1:] == ["False", "False"]
    assert time.time() - started < 60  # generous: the import of airflow itself dominates


def test_monitoring_runs_hourly_one_at_a_time_and_fails_visibly_after_publishing(bag):
    dag = bag.dags[MONITORING_DAG_ID]
    assert (dag.schedule, dag.catchup, dag.max_active_runs) == ("@hourly", False, 1)
    assert set(dag.task_ids) == {*MONITORING_CHECKS, "publish_monitoring_report", "refresh_dashboard", "monitoring_verdict"}
    assert dag.get_task("publish_monitoring_report").upstream_task_ids == set(MONITORING_CHECKS)
    # the dashboard is refreshed before the verdict can fail the run
    assert dag.get_task("refresh_dashboard").upstream_task_ids == {"publish_monitoring_report"}
    assert dag.get_task("monitoring_verdict").upstream_task_ids == {"publish_monitoring_report", "refresh_dashboard"}
    assert dag.get_task("monitoring_verdict").retries == 0  # a verdict does not change on a retry
    for task in dag.tasks:
        assert task.doc_md
        assert task.execution_timeout and task.execution_timeout <= timedelta(hours=1)
        if task.task_id != "monitoring_verdict":
            assert task.retries >= 2 and task.retry_exponential_backoff
    assert "python -m mlops monitor" in dag.doc_md and "alert_window_hours" in dag.doc_md


def test_bias_detection_runs_weekly_one_at_a_time_with_retries(bag):
    dag = bag.dags["bias_detection_pipeline"]
    assert (dag.schedule, dag.catchup, dag.max_active_runs) == ("@weekly", False, 1)
    assert dag.task_ids == ["assess_bias_window"]
    task = dag.get_task("assess_bias_window")
    assert task.retries >= 2 and task.retry_exponential_backoff and task.doc_md
    assert task.execution_timeout and task.execution_timeout <= timedelta(hours=2)
    assert "not enough evidence" in dag.doc_md and "python -m mlops bias-window" in dag.doc_md
