"""The run lease, run outcomes and the metadata store's retries, on SQLite and on a real Postgres:
one live run per store, every process of that run let through, a dead run marked abandoned by
the next one, a stopped run's documents not blamed, and transient faults retried while integrity
errors are not."""

from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import UTC, datetime

import psycopg2
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from mlops.cli import default_run_id
from mlops.errors import LeaseLost, RunBusy, RunSuperseded
from mlops.io.metadata import MIGRATIONS_DIR, MetadataStore, RunLease, is_transient
from mlops.models import DocumentRecord
from tests.fixtures.postgres import _admin_url, _connect

pytestmark = pytest.mark.integration


def document(n: int) -> DocumentRecord:
    sha = f"{n:064x}"
    return DocumentRecord(sha256=sha, source_key=f"landing/{n}.pdf", original_filename=f"{n}.pdf",
                          size_bytes=10, raw_key=f"raw/{sha}")  # fmt: skip


def test_one_live_run_per_store_and_every_process_of_it_passes(metadata_store):
    metadata_store.acquire_lease("airflow_run", "worker-1:11", ttl_seconds=60)
    metadata_store.start_run("airflow_run", "fp", "1")

    with pytest.raises(RunBusy) as busy:
        metadata_store.acquire_lease("cli_run", "host:22", ttl_seconds=60)
    assert busy.value.run_id == "airflow_run"
    assert "run 'airflow_run' (worker-1:11) is live" in str(busy.value) and "wait" in str(busy.value)

    # another task process of the same Airflow run passes and renews the lease
    assert metadata_store.acquire_lease("airflow_run", "worker-2:33", ttl_seconds=60, continuing=True) == []
    assert metadata_store.lease()["holder"] == "worker-2:33"
    # a whole run in one process (the CLI's run) is exclusive, even against its own run id
    with pytest.raises(RunBusy, match="another process of run 'airflow_run'"):
        metadata_store.acquire_lease("airflow_run", "host:44", ttl_seconds=60, exclusive=True)

    assert metadata_store.renew_lease("airflow_run", "worker-2:33", ttl_seconds=60) is True
    assert metadata_store.renew_lease("cli_run", "host:22", ttl_seconds=60) is False
    metadata_store.finish_run("airflow_run", "success", {"seen": 1})  # closing a run gives its lease up
    assert metadata_store.lease() is None
    # its heartbeat beating once more after the close (a race) does not call the lease lost
    assert metadata_store.renew_lease("airflow_run", "worker-2:33", ttl_seconds=60) is True
    assert metadata_store.lease() is None
    run = metadata_store.get_run("airflow_run")
    assert (run["status"], run["outcome"], run["verdict"]) == ("success", "completed", "passed")

    assert metadata_store.acquire_lease("cli_run", "host:22", ttl_seconds=60) == []  # nobody was abandoned


def test_an_expired_lease_is_taken_over_and_its_run_marked_abandoned_with_the_reason(metadata_store):
    metadata_store.acquire_lease("killed", "host:1", ttl_seconds=1)
    metadata_store.start_run("killed", "fp", "1")
    metadata_store.start_run("older_crash", "fp", "1")  # running since before leases existed
    time.sleep(1.2)

    assert metadata_store.acquire_lease("next", "host:2", ttl_seconds=60) == ["killed", "older_crash"]

    assert metadata_store.renew_lease("killed", "host:1", ttl_seconds=60) is False  # its heartbeat learns it lost
    metadata_store.release_lease("next")
    assert metadata_store.renew_lease("killed", "host:1", ttl_seconds=60) is False  # still lost once the lease is free
    metadata_store.acquire_lease("next", "host:2", ttl_seconds=60)
    killed = metadata_store.get_run("killed")
    assert (killed["outcome"], killed["status"], killed["verdict"]) == ("abandoned", "failed", None)
    assert killed["finished_at"] is not None
    assert "its lease expired at" in killed["outcome_reason"] and "host:1" in killed["outcome_reason"]
    assert "run next took over its unfinished documents" in killed["outcome_reason"]
    assert "no live lease" in metadata_store.get_run("older_crash")["outcome_reason"]
    assert [event["event"] for event in metadata_store.events("killed")] == ["abandoned"]
    assert metadata_store.events("next")[0]["details"] == {"abandoned_runs": ["killed", "older_crash"]}
    assert [run["run_id"] for run in metadata_store.runs("abandoned")] == ["killed", "older_crash"]

    # the abandoned run's later tasks may not go on: its documents belong to the next run now
    metadata_store.start_run("next", "fp", "1")
    metadata_store.release_lease("next")
    with pytest.raises(RunSuperseded, match="run 'killed' was abandoned .* run 'next' has started since"):
        metadata_store.acquire_lease("killed", "host:1", ttl_seconds=60, continuing=True)
    # its Airflow failure callback closing it as an error does not hide why it stopped
    metadata_store.finish_run("killed", "failed", {}, outcome="error", reason="task validate_documents failed")
    assert metadata_store.get_run("killed")["outcome"] == "abandoned"
    assert "its lease expired at" in metadata_store.get_run("killed")["outcome_reason"]
    # starting it again from its first stage is a fresh start
    assert metadata_store.acquire_lease("killed", "host:1", ttl_seconds=60) == ["next"]


def test_a_stopped_run_is_closed_and_its_documents_are_not_blamed(metadata_store):
    for n in (1, 2):
        metadata_store.register_document(document(n), "earlier")
    metadata_store.begin_attempts([document(1).sha256], "extract_data", "earlier")  # a run that died
    metadata_store.begin_attempts([document(1).sha256], "extract_data", "stopped")
    metadata_store.begin_attempts([document(2).sha256], "extract_data", "stopped")
    metadata_store.acquire_lease("stopped", "host:1", ttl_seconds=60)
    metadata_store.start_run("stopped", "fp", "1")

    metadata_store.stop_run("stopped", "interrupted", "stopped by SIGTERM during extract_data", stage="extract_data")

    run = metadata_store.get_run("stopped")
    assert (run["outcome"], run["status"], run["outcome_reason"]) == (
        "interrupted", "failed", "stopped by SIGTERM during extract_data")  # fmt: skip
    assert metadata_store.lease() is None
    # the interrupted run's own attempts are taken back, the earlier death still counts
    attempts = metadata_store.document_attempts("extract_data", [document(1).sha256, document(2).sha256])
    assert attempts == {document(1).sha256: 1}
    (event,) = metadata_store.events("stopped")
    assert (event["stage"], event["event"], event["details"]["reason"]) == (
        "extract_data", "interrupted", "stopped by SIGTERM during extract_data")  # fmt: skip
    # its other tasks (e.g. the rest of a mapped extract_data) do not pick it up again
    with pytest.raises(RunSuperseded, match="run 'stopped' was interrupted .* the next run takes over"):
        metadata_store.acquire_lease("stopped", "host:2", ttl_seconds=60, continuing=True)
    assert metadata_store.lease() is None


def test_the_heartbeat_keeps_a_live_run_s_lease_and_notices_when_it_is_lost(metadata_store):
    lease = RunLease(metadata_store, "live", ttl_seconds=1.0, heartbeat_seconds=0.2).acquire()
    try:
        time.sleep(1.5)  # past the TTL: only the heartbeat keeps it
        with pytest.raises(RunBusy, match="run 'live'"):
            metadata_store.acquire_lease("other", "host:2", ttl_seconds=60)
        lease.check()
    finally:
        lease.stop()
    time.sleep(1.1)
    metadata_store.acquire_lease("other", "host:2", ttl_seconds=60)  # expired once the heartbeat stopped

    stalled = RunLease(metadata_store, "stalled", ttl_seconds=2.0, heartbeat_seconds=0.2)
    with pytest.raises(RunBusy):
        stalled.acquire()
    waiting = RunLease(metadata_store, "stalled", ttl_seconds=2.0, heartbeat_seconds=0.2, wait_seconds=5)
    releaser = threading.Timer(0.5, metadata_store.release_lease, args=("other",))
    releaser.start()
    waiting.acquire()  # waits for the live run to give the lease up
    try:
        with metadata_store.engine.begin() as conn:  # another run takes over behind its back
            conn.execute(sa.text("UPDATE run_lease SET run_id = 'thief'"))
        time.sleep(0.6)
        with pytest.raises(LeaseLost, match="run 'stalled' lost its lease"):
            waiting.check()
    finally:
        waiting.stop()


def test_transient_faults_are_retried_and_integrity_errors_are_not():
    operational = sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    assert is_transient(operational, "postgresql")
    assert is_transient(sa.exc.OperationalError("x", {}, Exception("database is locked")), "sqlite")
    assert not is_transient(sa.exc.OperationalError("x", {}, Exception("no such table: runs")), "sqlite")
    assert not is_transient(sa.exc.IntegrityError("x", {}, Exception("duplicate key")), "postgresql")
    assert not is_transient(ValueError("x"), "postgresql")


def test_postgres_outage_is_retried_within_the_budget(postgres_schema_url):
    """The database refuses connections and drops the open ones for ~2 s: calls wait and succeed."""
    name = f"mlops-retry-{uuid.uuid4().hex[:8]}"
    url = sa.make_url(postgres_schema_url).update_query_dict({"application_name": name})
    store = MetadataStore(url, max_attempts=8, max_backoff_seconds=2)
    store.migrate()
    database = url.database
    admin = _connect(_admin_url())
    try:
        store.start_run("run-1", "fp", "1")
        with admin.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (name,))
        threading.Timer(2.0, _allow_connections, args=(admin, database)).start()
        started = time.monotonic()
        store.record_event("run-1", "extract_data", "stage_finished", details={"seconds": 1})
        assert time.monotonic() - started >= 1.0  # it did wait for the database
        assert [event["event"] for event in store.events("run-1")] == ["stage_finished"]

        # an integrity error is a bug, not an outage: no retry, at once
        started = time.monotonic()
        with store.engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
            conn.execute(sa.text("INSERT INTO pipeline_runs (run_id, started_at, status, counts, "
                                 "settings_fingerprint, pipeline_version) VALUES ('run-1', now(), 'x', '{}', 'f', '1')"))  # fmt: skip
        with pytest.raises(sa.exc.IntegrityError):
            store.claim_landing_object("run-1", "landing/x.pdf", "e", 1, "f" * 64, False)  # unknown document
        assert time.monotonic() - started < 1.0
    finally:
        _allow_connections(admin, database)
        admin.close()
        store.dispose()


def _allow_connections(admin: psycopg2.extensions.connection, database: str) -> None:
    with admin.cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


def test_a_failed_gate_and_a_run_that_broke_are_told_apart(metadata_store):
    metadata_store.start_run("gate_failed", "fp", "1")
    metadata_store.finish_run("gate_failed", "failed", {"seen": 3})
    metadata_store.start_run("broke", "fp", "1")
    metadata_store.finish_run("broke", "failed", {}, outcome="error", reason="task extract_data failed: OSError")

    gate_failed, broke = metadata_store.get_run("gate_failed"), metadata_store.get_run("broke")
    assert (gate_failed["status"], gate_failed["outcome"], gate_failed["verdict"]) == ("failed", "completed", "failed")
    assert (broke["status"], broke["outcome"], broke["verdict"]) == ("failed", "error", None)
    assert broke["outcome_reason"] == "task extract_data failed: OSError"
    metadata_store.start_run("broke", "fp", "1")  # Airflow clears the task: running again, nothing stale
    again = metadata_store.get_run("broke")
    assert (again["outcome"], again["outcome_reason"], again["verdict"], again["finished_at"]) == ("running", None, None, None)


def test_runs_closed_before_migration_0004_get_an_outcome(empty_store):
    with empty_store.engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0003")
    with empty_store.engine.begin() as conn:
        for run_id, status, finished in (("ok", "success", True), ("meh", "partial", True), ("bad", "failed", True),
                                         ("killed", "running", False)):  # fmt: skip
            conn.execute(sa.text(
                "INSERT INTO pipeline_runs (run_id, started_at, finished_at, status, counts, settings_fingerprint, "
                "pipeline_version) VALUES (:run_id, :now, :finished, :status, '{}', 'fp', '1')"),
                {"run_id": run_id, "now": datetime(2026, 1, 1), "finished": datetime(2026, 1, 1) if finished else None,
                 "status": status})  # fmt: skip

    empty_store.migrate()

    runs = {run["run_id"]: (run["outcome"], run["verdict"]) for run in empty_store.runs()}
    assert runs == {"ok": ("completed", "passed"), "meh": ("completed", "warning"), "bad": ("completed", "failed"),
                    "killed": ("running", None)}  # fmt: skip
    assert "a failed gate or a crash" in empty_store.get_run("bad")["outcome_reason"]
    assert empty_store.acquire_lease("next", "host:1", ttl_seconds=60) == ["killed"]


def test_cli_run_ids_launched_in_the_same_second_differ():
    ids = {default_run_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"cli__\d{8}T\d{6}Z_[0-9a-f]{6}", run_id) for run_id in ids)


def _alembic_config(conn: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


def test_an_airflow_task_beside_a_live_run_is_retried_and_one_of_a_superseded_run_fails_at_once(tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from mlops.config import get_settings
    from mlops.orchestration import run_task

    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        store = MetadataStore.from_settings(get_settings())
        store.migrate()
        store.acquire_lease("scheduled__killed", "worker:1", ttl_seconds=0.5)
        store.start_run("scheduled__killed", "fp", "1")
        time.sleep(0.6)  # its lease expires between two of its tasks; a CLI run takes the store over
        store.acquire_lease("cli_run", "host:2", ttl_seconds=60)
        store.start_run("cli_run", "fp", "1")
        context = {"params": {}, "logical_date": datetime.now(UTC), "run_id": "scheduled__killed"}

        with pytest.raises(RunBusy, match="run 'cli_run'"):  # an ordinary failure: Airflow retries it
            run_task("validate_documents", context)
        store.finish_run("cli_run", "success", {})
        with pytest.raises(AirflowFailException, match=r"was abandoned .* cannot go on.*\(not retried\)"):
            run_task("validate_documents", context)
    finally:
        get_settings.cache_clear()
