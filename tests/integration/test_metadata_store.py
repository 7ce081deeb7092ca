"""The metadata store behaves the same on SQLite and on a real Postgres server."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mlops.config import Settings
from mlops.io.metadata import IN_CHUNK, Base, MetadataError, MetadataStore
from mlops.models import DocumentFormat, DocumentRecord, DocumentStatus, PreprocessRecord, QuarantineReason
from tests.integration.test_metadata_results import HEAD

pytestmark = pytest.mark.integration


def sha(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def document(n: int) -> DocumentRecord:
    return DocumentRecord(
        sha256=sha(n),
        source_key=f"landing/loan-{n}.pdf",
        original_filename=f"loan-{n}.pdf",
        size_bytes=1000 + n,
        raw_key=f"raw/{sha(n)}.pdf",
        format=DocumentFormat.PDF,
        pages=2,
    )


def preprocess_record(n: int, **changes: object) -> PreprocessRecord:
    values = {
        "sha256": sha(n),
        "format": DocumentFormat.PDF,
        "pages": 2,
        "has_text_layer": True,
        "clarity": 0.8,
        "min_dpi": 150.0,
        "phash": f"{n:016x}",
        "fingerprint": f"fp-{n}",
    }
    return PreprocessRecord(**(values | changes))


def count_rows(store: MetadataStore, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one()


def test_migrate_again_changes_nothing_and_keeps_data(metadata_store):
    metadata_store.register_document(document(1), "run-1")

    metadata_store.migrate()

    assert metadata_store.schema_revision() == HEAD
    assert metadata_store.get_document(sha(1))["source_key"] == "landing/loan-1.pdf"


def test_orm_models_match_the_migrated_schema(metadata_store):
    with metadata_store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_document_attempts_count_per_stage_until_the_stage_is_done_with_the_document(metadata_store):
    for n in (1, 2):
        metadata_store.register_document(document(n), "run-1")
    metadata_store.begin_attempts([sha(1)], "validate_documents", "run-1")
    metadata_store.begin_attempts([sha(1)], "validate_documents", "run-2")
    metadata_store.begin_attempts([sha(1)], "preprocess_documents", "run-2")
    metadata_store.begin_attempts([sha(2)], "validate_documents", "run-2")

    assert metadata_store.document_attempts("validate_documents", [sha(1), sha(2), sha(3)]) == {sha(1): 2, sha(2): 1}
    metadata_store.end_attempts("validate_documents", [sha(1), sha(3)])
    assert metadata_store.document_attempts("validate_documents", [sha(1), sha(2)]) == {sha(2): 1}
    assert metadata_store.document_attempts("preprocess_documents", [sha(1)]) == {sha(1): 1}


def test_register_document_twice_keeps_one_row_and_tracks_last_run(metadata_store):
    assert metadata_store.register_document(document(1), "run-1") is True
    first = metadata_store.get_document(sha(1))

    assert metadata_store.register_document(document(1), "run-2") is False

    assert count_rows(metadata_store, "documents") == 1
    again = metadata_store.get_document(sha(1))
    assert (again["first_seen_run"], again["last_seen_run"]) == ("run-1", "run-2")
    assert again["status"] == DocumentStatus.ACQUIRED
    assert again["created_at"] == first["created_at"]
    assert again["created_at"].tzinfo is not None and again["created_at"].utcoffset().total_seconds() == 0
    assert metadata_store.get_document(sha(99)) is None


def test_update_document_and_filter_documents(metadata_store):
    for n in range(3):
        metadata_store.register_document(document(n), "run-1")
    metadata_store.register_document(document(2), "run-2")

    metadata_store.update_document(
        sha(1),
        status=DocumentStatus.QUARANTINED,
        quarantine_reason=QuarantineReason.ENCRYPTED,
        quarantine_detail="password-protected PDF",
    )
    metadata_store.update_document(sha(0), status="accepted", pages=5)

    quarantined = metadata_store.documents(status=DocumentStatus.QUARANTINED)
    assert [(row["sha256"], row["quarantine_reason"], row["quarantine_detail"]) for row in quarantined] == [
        (sha(1), "encrypted", "password-protected PDF")
    ]
    accepted = metadata_store.get_document(sha(0))
    assert (accepted["status"], accepted["pages"], accepted["format"]) == ("accepted", 5, "pdf")
    assert accepted["updated_at"] > accepted["created_at"]
    assert {row["sha256"] for row in metadata_store.documents(run_id="run-1")} == {sha(0), sha(1)}
    assert [row["sha256"] for row in metadata_store.documents(run_id="run-2")] == [sha(2)]
    with pytest.raises(MetadataError, match=sha(7)):
        metadata_store.update_document(sha(7), status="accepted")


def test_claim_landing_object_only_once(metadata_store):
    metadata_store.register_document(document(1), "run-1")
    claim = {"source_key": "landing/loan-1.pdf", "size_bytes": 1001, "sha256": sha(1), "is_duplicate": False}

    assert metadata_store.claim_landing_object("run-1", etag="etag-a", **claim) is True
    assert metadata_store.claim_landing_object("run-2", etag="etag-a", **claim) is False
    assert metadata_store.claim_landing_object("run-2", etag="etag-b", **claim) is True

    assert count_rows(metadata_store, "landing_objects") == 2
    unseen = [(f"landing/other-{i}.pdf", "x") for i in range(IN_CHUNK * 2 + 7)]
    taken = metadata_store.landing_claims(
        [*unseen[:500], ("landing/loan-1.pdf", "etag-a"), *unseen[500:], ("landing/loan-1.pdf", "etag-b")]
    )
    assert {pair: claim["run_id"] for pair, claim in taken.items()} == {
        ("landing/loan-1.pdf", "etag-a"): "run-1",
        ("landing/loan-1.pdf", "etag-b"): "run-2",
    }
    assert taken[("landing/loan-1.pdf", "etag-a")]["sha256"] == sha(1)
    assert metadata_store.landing_claims([]) == {}

    metadata_store.reassign_landing_object("landing/loan-1.pdf", "etag-a", "run-3")
    assert [row["etag"] for row in metadata_store.landing_objects("run-3")] == ["etag-a"]
    assert [row["etag"] for row in metadata_store.landing_objects("run-2")] == ["etag-b"]


def test_concurrent_claims_from_threads_have_exactly_one_winner(metadata_store):
    metadata_store.register_document(document(1), "run-1")
    workers = 8
    barrier = threading.Barrier(workers)

    def claim(worker: int) -> bool:
        barrier.wait()
        return metadata_store.claim_landing_object(
            f"run-{worker}", "landing/loan-1.pdf", "etag-a", 1001, sha(1), False
        )

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(claim, range(workers)))

    assert results.count(True) == 1
    assert count_rows(metadata_store, "landing_objects") == 1


def _worker_process(url: str, worker: int, start: multiprocessing.synchronize.Event) -> list[bool]:
    """Another process (as a pool worker would be) registering, claiming and logging the same items."""
    store = MetadataStore(url)
    start.wait(10)
    won = []
    for n in range(10):
        store.register_document(document(n), f"run-{worker}")
        won.append(
            store.claim_landing_object(f"run-{worker}", f"landing/loan-{n}.pdf", "e", 1, sha(n), False)
        )
        store.record_event(f"run-{worker}", "acquire", "claimed", sha256=sha(n), details={"won": won[-1]})
    store.mark_processed([sha(n) for n in range(10)], "1", f"run-{worker}")
    store.dispose()
    return won


def test_concurrent_worker_processes_do_not_collide(metadata_store):
    context = multiprocessing.get_context("fork")
    start = context.Manager().Event()
    url = metadata_store.url.render_as_string(hide_password=False)
    workers = 4

    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(_worker_process, url, worker, start) for worker in range(workers)]
        start.set()
        results = [future.result(timeout=120) for future in futures]

    assert [sum(column) for column in zip(*results, strict=True)] == [1] * 10
    assert count_rows(metadata_store, "documents") == 10
    assert count_rows(metadata_store, "landing_objects") == 10
    assert len(metadata_store.events()) == workers * 10
    assert metadata_store.processed_set("1") == {sha(n) for n in range(10)}


def test_mark_processed_is_idempotent_per_pipeline_version(metadata_store):
    assert metadata_store.mark_processed([sha(1), sha(2)], "1", "run-1") == 2
    assert metadata_store.mark_processed([sha(2), sha(3), sha(3)], "1", "run-2") == 1

    assert metadata_store.processed_set("1") == {sha(1), sha(2), sha(3)}
    assert count_rows(metadata_store, "processed_documents") == 3
    assert metadata_store.is_processed(sha(2), "1") is True
    assert metadata_store.is_processed(sha(2), "2") is False
    assert metadata_store.processed_set("2") == set()
    assert metadata_store.mark_processed([], "1", "run-3") == 0


UNIQUE_ROWS = {
    "documents": {
        "sha256": sha(1), "source_key": "k", "original_filename": "f", "size_bytes": 1, "status": "acquired",
        "quarantine_detail": "", "raw_key": "r", "first_seen_run": "run-x", "last_seen_run": "run-x",
        "created_at": datetime(2024, 1, 1, tzinfo=UTC), "updated_at": datetime(2024, 1, 1, tzinfo=UTC),
    },
    "landing_objects": {
        "source_key": "landing/loan-1.pdf", "etag": "etag-a", "size_bytes": 1, "sha256": sha(1),
        "run_id": "run-x", "acquired_at": datetime(2024, 1, 1, tzinfo=UTC), "is_duplicate": False,
    },
    "processed_documents": {
        "sha256": sha(1), "pipeline_version": "1", "run_id": "run-x",
        "processed_at": datetime(2024, 1, 1, tzinfo=UTC),
    },
    "preprocess_results": {
        "sha256": sha(1), "run_id": "run-1", "pages": 1, "format": "pdf", "has_text_layer": True,
        "clarity": 0.5, "phash": "0", "fingerprint": "f",
    },
}  # fmt: skip


@pytest.mark.parametrize("table", UNIQUE_ROWS)
def test_unique_constraints_hold_even_when_the_api_is_bypassed(metadata_store, table):
    metadata_store.register_document(document(1), "run-1")
    metadata_store.claim_landing_object("run-1", "landing/loan-1.pdf", "etag-a", 1001, sha(1), False)
    metadata_store.mark_processed([sha(1)], "1", "run-1")
    metadata_store.save_preprocess_results("run-1", [preprocess_record(1)])
    model = next(mapper.class_ for mapper in Base.registry.mappers if mapper.local_table.name == table)

    with pytest.raises(sa.exc.IntegrityError), metadata_store.engine.begin() as conn:
        conn.execute(sa.insert(model), [UNIQUE_ROWS[table]])

    assert count_rows(metadata_store, table) == 1


def test_landing_object_needs_a_registered_document(metadata_store):
    with pytest.raises(sa.exc.IntegrityError):
        metadata_store.claim_landing_object("run-1", "landing/x.pdf", "e", 1, sha("unknown"), False)
    assert metadata_store.landing_claims([("landing/x.pdf", "e")]) == {}


def test_deferred_writes_commit_together_in_order_and_survive_an_error_in_the_block(metadata_store):
    for n in range(2):
        metadata_store.register_document(document(n), "run-1")
    other_reader = MetadataStore(metadata_store.engine.url.render_as_string(hide_password=False))

    with metadata_store.deferred_writes():
        metadata_store.update_document(sha(0), status=DocumentStatus.ACCEPTED)
        metadata_store.record_event("run-1", "validate", "accepted", sha256=sha(0))
        assert other_reader.get_document(sha(0))["status"] == DocumentStatus.ACQUIRED  # still queued
        assert metadata_store.get_document(sha(0))["status"] == DocumentStatus.ACCEPTED  # a read flushes first
        metadata_store.update_document(sha(1), status=DocumentStatus.ACCEPTED)
    assert other_reader.get_document(sha(1))["status"] == DocumentStatus.ACCEPTED

    with pytest.raises(RuntimeError), metadata_store.deferred_writes():
        metadata_store.update_document(sha(1), status=DocumentStatus.PREPROCESSED)
        raise RuntimeError("a stage failed half way")
    assert other_reader.get_document(sha(1))["status"] == DocumentStatus.PREPROCESSED
    assert [e["event"] for e in other_reader.events("run-1")] == ["accepted"]
    other_reader.dispose()


def test_a_failed_write_leaves_nothing_behind(metadata_store):
    shas = [sha(n) for n in range(IN_CHUNK + 10)]  # two INSERT statements, the second one fails

    with pytest.raises(sa.exc.IntegrityError):
        metadata_store.mark_processed([*shas, None], "1", "run-1")

    assert metadata_store.processed_set("1") == set()
    assert metadata_store.mark_processed(shas, "1", "run-1") == len(shas)


def test_audit_events_keep_order_and_export_as_jsonl(metadata_store):
    when = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    metadata_store.record_event("run-1", "acquire", "acquired", sha256=sha(1), details={"size": 10})
    metadata_store.record_event("run-2", "acquire", "acquired", sha256=sha(9))
    metadata_store.record_event(
        "run-1", "validate", "quarantined", sha256=sha(1),
        details={"reason": "encrypted", "pages": [1, 2], "nested": {"ok": False}, "seen": when},
    )  # fmt: skip
    metadata_store.record_event("run-1", "report", "run_finished")

    events = metadata_store.events("run-1")
    assert [(e["stage"], e["event"]) for e in events] == [
        ("acquire", "acquired"), ("validate", "quarantined"), ("report", "run_finished")
    ]  # fmt: skip
    assert events[1]["details"]["seen"] == when.isoformat()
    assert events[2]["sha256"] is None and events[2]["details"] == {}
    assert len(metadata_store.events()) == 4

    out = io.StringIO()
    assert metadata_store.export_audit_jsonl(out, run_id="run-1") == 3
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["id"] for line in lines] == sorted(line["id"] for line in lines)
    assert [line["event"] for line in lines] == ["acquired", "quarantined", "run_finished"]
    assert lines[1]["details"] == {
        "reason": "encrypted", "pages": [1, 2], "nested": {"ok": False}, "seen": "2024-05-01T12:30:00+00:00"
    }  # fmt: skip
    assert datetime.fromisoformat(lines[0]["created_at"]).utcoffset().total_seconds() == 0

    everything = io.StringIO()
    assert metadata_store.export_audit_jsonl(everything) == 4


@pytest.mark.parametrize("empty_store", ["postgres"], indirect=True)
@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_events SET event = 'forged'", "DELETE FROM audit_events", "TRUNCATE audit_events"],
)
def test_postgres_rejects_changes_to_audit_events(metadata_store, statement):
    metadata_store.record_event("run-1", "validate", "quarantined", sha256=sha(1))

    with pytest.raises(sa.exc.DBAPIError, match="append-only"), metadata_store.engine.begin() as conn:
        conn.exec_driver_sql(statement)

    assert [e["event"] for e in metadata_store.events()] == ["quarantined"]


def test_run_lifecycle(metadata_store):
    assert metadata_store.get_run("run-1") is None
    assert metadata_store.start_run("run-1", "fp-1", "1") is True
    started = metadata_store.get_run("run-1")
    assert (started["status"], started["finished_at"], started["counts"]) == ("running", None, {})

    metadata_store.finish_run("run-1", "failed", {"acquired": 3})
    assert metadata_store.start_run("run-1", "fp-1", "1") is False  # Airflow retries the run
    retried = metadata_store.get_run("run-1")
    assert (retried["status"], retried["finished_at"]) == ("running", None)
    assert retried["started_at"] == started["started_at"]

    metadata_store.finish_run("run-1", "partial", {"acquired": 3, "quarantined": {"encrypted": 1}})
    finished = metadata_store.get_run("run-1")
    assert finished["status"] == "partial"
    assert finished["counts"] == {"acquired": 3, "quarantined": {"encrypted": 1}}
    assert finished["finished_at"] >= finished["started_at"]
    assert (finished["settings_fingerprint"], finished["pipeline_version"]) == ("fp-1", "1")

    with pytest.raises(MetadataError, match="never started"):
        metadata_store.finish_run("run-404", "success", {})
    with pytest.raises(MetadataError, match="not running"):
        metadata_store.finish_run("run-1", "running", {})
    with pytest.raises(ValueError):
        metadata_store.finish_run("run-1", "done", {})


def test_preprocess_results_upsert_per_run_and_feed_near_duplicate_search(metadata_store):
    metadata_store.save_preprocess_results("run-1", [preprocess_record(1), preprocess_record(2)])
    metadata_store.save_preprocess_results(
        "run-1", [preprocess_record(2, clarity=0.3, near_duplicate_of=sha(1), near_duplicate_distance=4)]
    )
    metadata_store.save_preprocess_results(
        "run-2", [preprocess_record(2), preprocess_record(3, min_dpi=None)]
    )

    run_1 = metadata_store.preprocess_results("run-1")
    assert [record.sha256 for record in run_1] == sorted([sha(1), sha(2)])
    retried = next(record for record in run_1 if record.sha256 == sha(2))
    assert (retried.clarity, retried.near_duplicate_of, retried.near_duplicate_distance) == (0.3, sha(1), 4)
    assert count_rows(metadata_store, "preprocess_results") == 4
    run_2 = {record.sha256: record for record in metadata_store.preprocess_results("run-2")}
    assert (run_2[sha(2)].clarity, run_2[sha(3)].min_dpi) == (0.8, None)

    query = [(sha(4), f"{1:016x}")]
    assert metadata_store.nearest_phashes(query, 22) == {sha(4): (0, sha(1))}
    assert metadata_store.nearest_phashes(query, 22, exclude_run_id="run-1") == {sha(4): (1, sha(3))}
    assert metadata_store.nearest_phashes([(sha(1), f"{1:016x}")], 0) == {}  # never itself


def test_from_settings_creates_the_sqlite_file_under_data_dir(tmp_path):
    settings = Settings(data_dir=tmp_path / "nested" / "data")
    store = MetadataStore.from_settings(settings)
    try:
        store.migrate()
        assert store.start_run("run-1", settings.fingerprint(), settings.pipeline_version) is True
    finally:
        store.dispose()
    assert (tmp_path / "nested" / "data" / "metadata.db").is_file()


def test_from_settings_takes_postgres_from_an_airflow_connection(postgres_url, monkeypatch, tmp_path):
    if "AIRFLOW_HOME" not in os.environ:
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    uri = sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_TEST_METADATA", uri)
    store = MetadataStore.from_settings(Settings(metadata={"airflow_conn_id": "mlops_test_metadata"}))
    try:
        store.migrate()
        assert store.url.database == sa.make_url(postgres_url).database
        assert store.register_document(document(1), "run-1") is True
        assert store.claim_landing_object("run-1", "landing/loan-1.pdf", "e", 1, sha(1), False) is True
        assert store.claim_landing_object("run-2", "landing/loan-1.pdf", "e", 1, sha(1), False) is False
    finally:
        store.dispose()


def test_processed_and_status_lookups_answer_for_the_documents_asked(metadata_store):
    for n in (1, 2, 3):
        metadata_store.register_document(document(n), "run-1")
    metadata_store.update_document(sha(2), status=DocumentStatus.QUARANTINED)
    metadata_store.mark_processed([sha(1), sha(3)], "v1", "run-1")
    metadata_store.mark_processed([sha(3)], "v2", "run-1")

    assert metadata_store.processed_among([sha(1), sha(2), sha(4)], "v1") == {sha(1)}
    assert metadata_store.processed_among([sha(1), sha(2)], "v2") == set()
    statuses = metadata_store.document_statuses([sha(2), sha(3), sha(4)])
    assert statuses == {sha(2): "quarantined", sha(3): "acquired"}
