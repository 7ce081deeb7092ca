"""Real `python -m mlops run` processes on one store, killed and run side by side: one run at a
time processes the documents, a run killed with SIGKILL is marked abandoned by the next one,
which finishes its documents, SIGTERM closes a run as interrupted with a message and exit code 7,
and a run rides out a restart of its PostgreSQL or S3 server. Whatever happens, every
landing file ends with exactly one final state and at most one extraction row. A run killed at an
exact write (the test's hook sends SIGKILL to its process group there) leaves what it decided to
the report of the run that takes over, and its leftovers to that run's clean-up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlops.cli import EXIT_BUSY, EXIT_INFRASTRUCTURE, EXIT_INTERRUPTED
from mlops.config import Settings
from mlops.errors import RunSuperseded
from mlops.io.metadata import MetadataStore
from mlops.io.objects import TEMP_PREFIX, open_object_store
from mlops.sample_data import LABELS_FILENAME
from mlops.stages import STAGE_NAMES, open_context
from mlops.stages.generate_reports import publish_failure
from tests.conftest import REPO
from tests.fixtures.platform import TEST_MAX_FILE_BYTES, platform_settings
from tests.fixtures.s3_server import SeaweedS3

pytestmark = pytest.mark.integration
LEASE_ENV = {"MLOPS_LEASE__TTL_SECONDS": "8", "MLOPS_LEASE__HEARTBEAT_SECONDS": "0.5"}  # slack for a loaded machine
RUN_TIMEOUT = 180
KILLED_AT_A_WRITE = ["-m", "tests.fixtures.killed_at_a_write"]  # see its docstring


@pytest.fixture(scope="module")
def corpus_with_bad_files(tmp_path_factory: pytest.TempPathFactory, small_corpus: Path) -> Path:
    """The small corpus and two files that validation quarantines."""
    directory = tmp_path_factory.mktemp("corpus-with-bad-files")
    for path in small_corpus.iterdir():
        (directory / path.name).write_bytes(path.read_bytes())
    (directory / "bad-empty.pdf").write_bytes(b"")
    (directory / "bad-corrupt.pdf").write_bytes(b"%PDF-1.7\n" + b"not a pdf body " * 40)
    return directory


def landed(tmp_path: Path, corpus: Path, metadata_url: str | None = None) -> Settings:
    settings = platform_settings(tmp_path, **({"metadata": {"url": metadata_url}} if metadata_url else {}))
    store = open_object_store(settings)
    for path in sorted(corpus.iterdir()):
        store.put_bytes(f"landing/{path.name}", path.read_bytes())
    return settings


def migrated(url: str) -> MetadataStore:
    store = MetadataStore(url)
    store.migrate()
    return store


def landed_on(backend: str, request: pytest.FixtureRequest, tmp_path: Path, corpus: Path) -> tuple[Settings, MetadataStore]:
    """The corpus landed in a local store, with SQLite or Postgres metadata (migrated)."""
    url = request.getfixturevalue("postgres_schema_url") if backend == "postgres" else None
    settings = landed(tmp_path, corpus, url)
    return settings, migrated(settings.metadata_url)


def launch(settings: Settings, *args: str, kill_at: str | None = None, **env: str) -> subprocess.Popen[str]:
    """``python -m mlops run`` (or ARGS), SIGKILLed at the first write of a key matching ``kill_at``."""
    command = [*KILLED_AT_A_WRITE, "mlops", *(args or ["run"])] if kill_at else ["-m", "mlops", *(args or ["run"])]
    variables = os.environ | LEASE_ENV | env | ({"KILL_AT_KEY": kill_at} if kill_at else {}) | {
        "MLOPS_DATA_DIR": str(settings.data_dir),
        "MLOPS_WORKERS": "2",
        "MLOPS_LIMITS__MAX_FILE_BYTES": str(TEST_MAX_FILE_BYTES),
        "MLOPS_METADATA__URL": settings.metadata_url,
        "MLOPS_GATE__FAIL_RUN_ON": "never",
    }
    return subprocess.Popen([sys.executable, *command], cwd=REPO, env=variables, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
    return process.returncode, stdout, stderr


def wait_until(condition: Callable[[], object], what: str, process: subprocess.Popen[str], timeout: float = 90) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before {what}: {process.communicate()[1][-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def live_run(metadata: MetadataStore) -> str | None:
    lease = metadata.lease()
    return lease["run_id"] if lease else None


def stage_finished(metadata: MetadataStore, run_id: str, stage: str) -> bool:
    return any(event["event"] == "stage_finished" and event["stage"] == stage for event in metadata.events(run_id))


def assert_each_landing_file_processed_once(metadata: MetadataStore, corpus: Path) -> None:
    """One claim per landing file, one final state per document, one extraction per stored one."""
    objects = [row for run in metadata.runs() for row in metadata.landing_objects(run["run_id"])]
    assert sorted(row["source_key"] for row in objects) == sorted(f"landing/{p.name}" for p in corpus.iterdir()
                                                                  if p.name != "labels.jsonl")  # fmt: skip
    documents = {row["sha256"]: row for row in metadata.documents()}
    assert {row["status"] for row in documents.values()} <= {"stored", "quarantined"}, documents
    assert not any(row["quarantine_reason"] in ("poison", "resource_limit") for row in documents.values())
    extractions = Counter(row["sha256"] for row in metadata.extractions())
    stored = {sha for sha, row in documents.items() if row["status"] == "stored"}
    assert set(extractions) == stored and set(extractions.values()) == {1}, extractions
    with metadata.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM document_attempts")).scalar_one() == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_second_run_beside_a_live_one_exits_naming_it_and_only_one_processes(
    backend, request, tmp_path, small_corpus
):
    settings, metadata = landed_on(backend, request, tmp_path, small_corpus)
    first = launch(settings)
    live = wait_until(lambda: live_run(metadata), "the first run holds the lease", first)

    code, _, stderr = finish(launch(settings))

    assert code == EXIT_BUSY, stderr[-2000:]
    assert f"run {live!r}" in stderr and "is live on this store" in stderr
    code, _, stderr = finish(first)
    assert code == 0, stderr[-3000:]
    assert [run["run_id"] for run in metadata.runs()] == [live]  # the second never started a run
    run = metadata.get_run(live)
    summary = json.loads(open_object_store(settings).get_bytes(f"reports/{live}/run_summary.json"))
    assert (run["outcome"], summary["outcome"]) == ("completed", "completed")
    assert run["verdict"] == summary["verdict"] == {"success": "passed"}.get(summary["status"], summary["status"])
    assert metadata.lease() is None
    assert_each_landing_file_processed_once(metadata, small_corpus)


def test_a_killed_run_is_abandoned_and_the_next_run_finishes_its_documents(tmp_path, small_corpus, postgres_schema_url):
    settings = landed(tmp_path, small_corpus, postgres_schema_url)
    metadata = migrated(settings.metadata_url)
    killed = launch(settings)
    run_id = wait_until(lambda: live_run(metadata), "the run holds the lease", killed)
    wait_until(lambda: stage_finished(metadata, run_id, "preprocess_documents"), "extract_data starts", killed)
    time.sleep(1.5)  # OCR under way
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    assert metadata.get_run(run_id)["outcome"] == "running"  # nobody could tell it so

    code, _, stderr = finish(launch(settings, MLOPS_LEASE__WAIT_SECONDS="60"))  # waits for the lease to expire

    assert code == 0, stderr[-3000:]
    dead = metadata.get_run(run_id)
    assert (dead["outcome"], dead["status"]) == ("abandoned", "failed") and dead["finished_at"]
    assert "its lease expired" in dead["outcome_reason"]
    (next_run,) = [run for run in metadata.runs() if run["run_id"] != run_id]
    assert next_run["outcome"] == "completed" and next_run["run_id"] in dead["outcome_reason"]
    assert [event["event"] for event in metadata.events(run_id) if event["stage"] == "run"] == ["abandoned"]
    assert any(event["event"] == "resumed" for event in metadata.events(next_run["run_id"]))
    assert {row["run_id"] for row in metadata.extractions()} == {next_run["run_id"]}
    assert_each_landing_file_processed_once(metadata, small_corpus)


def test_sigterm_closes_the_run_as_interrupted_and_the_rerun_loses_nothing(tmp_path, small_corpus):
    """SIGTERM to the run's process (`kill PID`, `timeout`, docker stop) and to its whole process
    group with its workers (systemd, Ctrl-C in a shell): interrupted both times, then a run that
    finishes everything."""
    settings = landed(tmp_path, small_corpus)
    metadata = migrated(settings.metadata_url)
    stopped: list[str] = []
    for target in ("process", "group"):
        run = launch(settings)
        run_id = wait_until(lambda: live_run(metadata), "the run holds the lease", run)
        wait_until(lambda run_id=run_id: stage_finished(metadata, run_id, "preprocess_documents"), "extract_data starts", run)
        time.sleep(1.5)
        started = time.monotonic()
        if target == "process":
            run.send_signal(signal.SIGTERM)
        else:
            os.killpg(run.pid, signal.SIGTERM)

        code, _, stderr = finish(run)

        assert code == EXIT_INTERRUPTED, (target, stderr[-3000:])
        assert time.monotonic() - started < 20
        assert f"run {run_id} interrupted: stopped by SIGTERM during extract_data" in stderr
        assert "Traceback" not in stderr
        row = metadata.get_run(run_id)
        assert (row["outcome"], row["status"], row["outcome_reason"]) == (
            "interrupted", "failed", "stopped by SIGTERM during extract_data")  # fmt: skip
        assert [(e["stage"], e["event"]) for e in metadata.events(run_id)][-1] == ("extract_data", "interrupted")
        assert metadata.lease() is None  # the next run need not wait
        stopped.append(run_id)

    code, _, stderr = finish(launch(settings))

    assert code == 0, stderr[-3000:]
    assert [metadata.get_run(run_id)["outcome"] for run_id in stopped] == ["interrupted"] * 2  # not abandoned
    assert_each_landing_file_processed_once(metadata, small_corpus)


def test_a_postgres_run_rides_out_a_database_server_restart(tmp_path, small_corpus, private_postgres):
    """Mid-run the run's PostgreSQL server (its own, started here) is shut down (fast: its open
    connections dropped), stays down ~2.5 s and starts again: the run retries and completes."""
    settings = landed(tmp_path, small_corpus, private_postgres.url)
    metadata = migrated(private_postgres.url)
    run = launch(settings)
    run_id = wait_until(lambda: live_run(metadata), "the run holds the lease", run)
    wait_until(lambda: stage_finished(metadata, run_id, "validate_documents"), "preprocessing starts", run)
    metadata.dispose()
    private_postgres.stop()
    time.sleep(2.5)
    private_postgres.start()

    code, _, stderr = finish(run)

    assert code == 0, stderr[-3000:]
    assert "metadata store: " in stderr and "retrying in" in stderr  # it did meet the outage
    assert metadata.get_run(run_id)["outcome"] == "completed"
    assert_each_landing_file_processed_once(metadata, small_corpus)


def test_a_run_that_outlives_its_retry_budget_exits_4_and_the_next_run_closes_it_as_failed(
    tmp_path, small_corpus, private_postgres
):
    """The database goes down mid-run and stays down past retry.max_attempts: the run stops with
    an infrastructure error (it cannot record that itself); once the database is back, the next
    run finds it abandoned, closes it as failed and finishes its documents."""
    settings = landed(tmp_path, small_corpus, private_postgres.url)
    metadata = migrated(private_postgres.url)
    run = launch(settings, MLOPS_RETRY__MAX_ATTEMPTS="3", MLOPS_RETRY__MAX_BACKOFF_SECONDS="0.5")
    run_id = wait_until(lambda: live_run(metadata), "the run holds the lease", run)
    wait_until(lambda: stage_finished(metadata, run_id, "validate_documents"), "preprocessing starts", run)
    metadata.dispose()
    private_postgres.stop()
    try:
        code, _, stderr = finish(run)
    finally:
        private_postgres.start()

    assert code == EXIT_INFRASTRUCTURE, stderr[-3000:]
    assert "(attempt 2 of 3)" in stderr and "Traceback" not in stderr
    assert metadata.get_run(run_id)["outcome"] == "running"  # nobody could tell the database

    code, _, stderr = finish(launch(settings, MLOPS_LEASE__WAIT_SECONDS="60"))

    assert code == 0, stderr[-3000:]
    dead = metadata.get_run(run_id)
    assert (dead["outcome"], dead["status"]) == ("abandoned", "failed") and dead["finished_at"]
    assert_each_landing_file_processed_once(metadata, small_corpus)


def landing_files(corpus: Path) -> int:
    return sum(path.name != LABELS_FILENAME for path in corpus.iterdir())


def published_summary(settings: Settings, folder: str) -> dict:
    return json.loads(open_object_store(settings).get_bytes(f"reports/{folder}/run_summary.json"))


def reported_once(summary: dict, corpus: Path) -> None:
    """The report counts every landing file once: its own new ones and those it took over."""
    taken = [run["stored"] + run["quarantined"] + run["duplicates"] for run in summary["taken_over"]]
    assert summary["documents"]["new"] + sum(taken) == landing_files(corpus), summary


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_run_killed_mid_extraction_leaves_its_quarantines_to_the_next_report_and_its_leftovers_cleaned(
    backend, request, tmp_path, corpus_with_bad_files
):
    settings, metadata = landed_on(backend, request, tmp_path, corpus_with_bad_files)
    data_dir = settings.local_root

    code, _, stderr = finish(launch(settings, kill_at=r"^runs/_extractions/", KILL_MID_WRITE="1"))

    assert code == -signal.SIGKILL, stderr[-3000:]
    (dead,) = [run["run_id"] for run in metadata.runs()]
    assert list(data_dir.rglob(f"{TEMP_PREFIX}*")) and (data_dir / "runs" / dead).is_dir()
    assert metadata.preprocess_results(dead)

    code, stdout, stderr = finish(launch(settings, MLOPS_LEASE__WAIT_SECONDS="60"))

    assert code == 0, stderr[-3000:]
    (taker,) = [run["run_id"] for run in metadata.runs() if run["run_id"] != dead]
    assert f"taken over from run {dead} (abandoned before its report): 0 stored, 2 quarantined" in stdout
    summary = published_summary(settings, "latest")
    assert summary["run_id"] == taker and not (data_dir / "reports" / dead).exists()
    (taken,) = summary["taken_over"]
    assert taken["quarantine_reasons"] == {"empty_file": 1, "corrupt": 1}
    reported_once(summary, corpus_with_bad_files)
    html = (data_dir / "reports" / taker / "report.html").read_text()
    assert "bad-corrupt.pdf" in html and f"decided by run {dead} (abandoned)" in html
    # the dead run's leftovers are gone, and the audit log says what went
    assert not (data_dir / "runs" / dead).exists()
    assert not list(data_dir.rglob(f"{TEMP_PREFIX}*"))
    assert metadata.preprocess_results(dead) == []
    (cleaned,) = metadata.events(dead, event="cleaned_up")
    assert cleaned["details"]["by_run"] == taker and cleaned["details"]["objects"] > 0
    assert cleaned["details"]["preprocess_results"] > 0
    (removed,) = metadata.events(taker, event="temp_files_removed")
    assert [key for key in removed["details"]["keys"] if key.startswith("runs/_extractions/")]
    # the re-scan links to its original once, not to the dead run's copy of it and back
    links = {row.sha256: row.near_duplicate_of for row in metadata.preprocess_results(taker) if row.near_duplicate_of}
    assert links and not [sha for sha, original in links.items() if links.get(original) == sha], links
    assert_each_landing_file_processed_once(metadata, corpus_with_bad_files)


def test_a_run_killed_while_reporting_is_reported_by_the_next_and_latest_never_goes_back(tmp_path, small_corpus):
    settings = landed(tmp_path, small_corpus)
    metadata = migrated(settings.metadata_url)
    store = open_object_store(settings)

    code, _, stderr = finish(launch(settings, kill_at=r"^reports/[^/]+/run_summary\.json$"))

    assert code == -signal.SIGKILL, stderr[-3000:]
    (dead,) = [run["run_id"] for run in metadata.runs()]
    stored = len(metadata.documents(status="stored"))
    assert stored and not store.exists(f"reports/{dead}/run_summary.json")

    code, stdout, stderr = finish(launch(settings, MLOPS_LEASE__WAIT_SECONDS="60"))

    assert code == 0, stderr[-3000:]
    (second,) = [run["run_id"] for run in metadata.runs() if run["run_id"] != dead]
    assert f"taken over from run {dead} (abandoned before its report): {stored} stored" in stdout
    summary = published_summary(settings, "latest")
    assert summary["run_id"] == second and summary["documents"]["new"] == 0
    reported_once(summary, small_corpus)

    # Airflow's failure callback for the killed task, arriving now, publishes nothing for it
    with pytest.raises(RunSuperseded, match=f"run {second!r} took over its documents"):
        publish_failure(open_context(dead, settings), "generate_reports", "the worker was lost")
    assert not store.exists(f"reports/{dead}/run_summary.json")
    assert published_summary(settings, "latest")["run_id"] == second

    code, _, stderr = finish(launch(settings))
    assert code == 0, stderr[-3000:]
    third = metadata.runs()[-1]["run_id"]
    assert published_summary(settings, third)["taken_over"] == []  # reported once, by the second run

    code, _, stderr = finish(launch(settings, "stage", "generate_reports", "--run-id", second))  # rebuild

    assert code == 0, stderr[-3000:]
    assert published_summary(settings, "latest")["run_id"] == third
    assert [run["run_id"] for run in published_summary(settings, second)["taken_over"]] == [dead]


@pytest.mark.parametrize("stage", STAGE_NAMES[:-1])  # generate_reports: the test above
def test_a_run_killed_in_any_stage_loses_nothing_and_the_next_reports_every_file_once(stage, tmp_path, small_corpus):
    settings = landed(tmp_path, small_corpus)
    metadata = migrated(settings.metadata_url)

    code, _, stderr = finish(launch(settings, kill_at=rf"^runs/[^/]+/{stage}/"))  # its first write of a result

    assert code == -signal.SIGKILL, stderr[-3000:]
    (dead,) = [run["run_id"] for run in metadata.runs()]
    assert not stage_finished(metadata, dead, stage)
    code, _, stderr = finish(launch(settings, MLOPS_LEASE__WAIT_SECONDS="60"))

    assert code == 0, stderr[-3000:]
    assert metadata.get_run(dead)["outcome"] == "abandoned"
    reported_once(published_summary(settings, "latest"), small_corpus)
    assert_each_landing_file_processed_once(metadata, small_corpus)


@pytest.mark.parametrize("stage", STAGE_NAMES[:-1])
def test_a_run_sigtermed_in_any_stage_closes_as_interrupted_and_the_next_finishes_every_file_once(
    stage, tmp_path, small_corpus
):
    settings = landed(tmp_path, small_corpus)
    metadata = migrated(settings.metadata_url)

    code, _, stderr = finish(launch(settings, kill_at=rf"^runs/[^/]+/{stage}/", KILL_SIGNAL="SIGTERM"))

    assert code == EXIT_INTERRUPTED, stderr[-3000:]
    (stopped,) = [run["run_id"] for run in metadata.runs()]
    assert f"run {stopped} interrupted: stopped by SIGTERM during {stage}" in stderr
    assert "Traceback" not in stderr
    assert metadata.get_run(stopped)["outcome"] == "interrupted" and metadata.lease() is None
    code, _, stderr = finish(launch(settings))

    assert code == 0, stderr[-3000:]
    assert metadata.get_run(stopped)["outcome"] == "interrupted"
    assert_each_landing_file_processed_once(metadata, small_corpus)


def test_a_run_rides_out_an_s3_server_restart(tmp_path, small_corpus, postgres_schema_url):
    """Mid-run the S3 server (its own, started here) stops and starts again on the same ports and
    data: the object store is retried and the run completes."""
    server = SeaweedS3(tmp_path / "seaweed").start()
    try:
        store = {"backend": "s3", "bucket": "restarted", "endpoint_url": server.endpoint_url,
                 "region": server.region, "access_key_id": server.access_key,
                 "secret_access_key": server.secret_key}  # fmt: skip
        settings = platform_settings(tmp_path, object_store=store, metadata={"url": postgres_schema_url})
        target = open_object_store(settings)
        for path in sorted(small_corpus.iterdir()):
            target.put_bytes(f"landing/{path.name}", path.read_bytes())
        metadata = migrated(settings.metadata_url)
        run = launch(settings, **server.env(), MLOPS_OBJECT_STORE__BUCKET="restarted")
        run_id = wait_until(lambda: live_run(metadata), "the run holds the lease", run)
        wait_until(lambda: stage_finished(metadata, run_id, "validate_documents"), "preprocessing starts", run)

        server.restart()  # down ~3 s: stopping, then starting until it takes writes again
        code, _, stderr = finish(run)
    finally:
        server.stop()

    assert code == 0, stderr[-3000:]
    assert metadata.get_run(run_id)["outcome"] == "completed"
    assert_each_landing_file_processed_once(metadata, small_corpus)
