"""The real DAG (`airflow dags test`) killed mid-run, as a worker crash or an ops engineer's "mark
failed" would: SIGKILL leaves a run that the next DAG run finds abandoned and finishes; SIGTERM,
at any stage, fails the Airflow run at once (no retries) and closes our run as ``interrupted``
without publishing a report for it. Either way the next DAG run processes every landing file
exactly once and reports each once."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from mlops.io.objects import open_object_store
from mlops.stages import STAGE_NAMES
from tests.conftest import REPO
from tests.e2e.test_dag_run import AIRFLOW, DAG_ID, last_run_states, settings_env
from tests.integration.test_kill_recovery import (
    KILLED_AT_A_WRITE,
    LEASE_ENV,
    assert_each_landing_file_processed_once,
    landed,
    migrated,
    published_summary,
    reported_once,
)

pytestmark = pytest.mark.e2e
# the first write of each stage's results: its work is under way and not finished
KILL_AT = {stage: rf"^runs/[^/]+/{stage}/" for stage in STAGE_NAMES[:-1]} | {
    "generate_reports": r"^reports/[^/]+/run_summary\.json$"
}


def dags_test(settings, **env: str) -> tuple[str, str]:
    """One `airflow dags test` (killed at the first write matching $KILL_AT_KEY if set): the
    Airflow run's final state ("killed" if it never got one) and the output."""
    command = [sys.executable, *KILLED_AT_A_WRITE, "airflow"] if "KILL_AT_KEY" in env else [AIRFLOW]
    variables = os.environ | settings_env(settings) | LEASE_ENV | {"MLOPS_GATE__FAIL_RUN_ON": "never"} | env
    result = subprocess.run([*command, "dags", "test", DAG_ID], check=False, env=variables, cwd=REPO, capture_output=True,
                            text=True, timeout=600, start_new_session=True)  # fmt: skip
    output = result.stdout + result.stderr
    ended = re.search(r"DagRun Finished: .*? state=(\w+)", output)
    return (ended.group(1) if ended else "killed"), output


def test_a_sigkilled_dag_run_is_abandoned_and_the_next_dag_run_finishes_its_documents(
    airflow_db, tmp_path, small_corpus
):
    settings = landed(tmp_path, small_corpus)
    metadata = migrated(settings.metadata_url)

    state, output = dags_test(settings, KILL_AT_KEY=KILL_AT["extract_data"])

    assert state == "killed", output[-3000:]
    (dead,) = metadata.runs()
    assert dead["outcome"] == "running"  # nobody could tell it so

    state, output = dags_test(settings, MLOPS_LEASE__WAIT_SECONDS="60")  # waits for the lease to expire

    assert state == "success", output[-6000:]
    assert metadata.get_run(dead["run_id"])["outcome"] == "abandoned"
    (taker,) = [run for run in metadata.runs() if run["run_id"] != dead["run_id"]]
    assert taker["outcome"] == "completed"
    assert {row["run_id"] for row in metadata.extractions()} == {taker["run_id"]}
    reported_once(published_summary(settings, "latest"), small_corpus)
    assert_each_landing_file_processed_once(metadata, small_corpus)


def test_dag_runs_sigtermed_at_each_stage_in_turn_are_interrupted_and_the_next_finishes_everything_once(
    airflow_db, tmp_path, small_corpus
):
    """One DAG run per stage, each stopped there by SIGTERM and each taking over what the ones
    before it left; then one that finishes and reports every landing file once."""
    settings = landed(tmp_path, small_corpus)
    metadata = migrated(settings.metadata_url)
    store = open_object_store(settings)
    stopped: list[str] = []
    for stage, key in KILL_AT.items():
        state, output = dags_test(settings, KILL_AT_KEY=key, KILL_SIGNAL="SIGTERM")

        assert state == "failed", (stage, output[-6000:])
        run = metadata.runs()[-1]
        assert (run["outcome"], run["outcome_reason"]) == (
            "interrupted", f"stopped by SIGTERM during {stage}"), stage  # fmt: skip
        assert metadata.lease() is None, stage  # the next run need not wait
        _, tasks = last_run_states()
        assert tasks[stage] == ("failed", 1), (stage, tasks)  # not retried: the run is closed
        assert f"run {run['run_id']} interrupted: stopped by SIGTERM during {stage}" in output
        assert not store.exists(f"reports/{run['run_id']}/run_summary.json"), stage  # the next run reports it
        stopped.append(run["run_id"])

    state, output = dags_test(settings)

    assert state == "success", output[-6000:]
    assert [metadata.get_run(run_id)["outcome"] for run_id in stopped] == ["interrupted"] * len(KILL_AT)
    summary = published_summary(settings, "latest")
    assert summary["run_id"] == metadata.runs()[-1]["run_id"] and summary["outcome"] == "completed"
    reported_once(summary, small_corpus)
    assert_each_landing_file_processed_once(metadata, small_corpus)
