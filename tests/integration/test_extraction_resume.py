"""Work survives a crash: each document's extraction is kept the moment it is done, so a task
that runs again (an Airflow retry, a run resuming a killed one) reuses it instead of reading the
pages again; reprocess reads them again."""

from __future__ import annotations

from mlops.sample_data import generate_corpus
from mlops.stages import STAGE_NAMES, open_context, run_stage
from tests.fixtures.platform import CORPUS_SEED, platform_settings

UP_TO_EXTRACT = STAGE_NAMES[: STAGE_NAMES.index("extract_data")]


def reused(ctx) -> list[int]:
    return [event["details"]["documents"] for event in ctx.metadata.events(ctx.run_id)
            if event["event"] == "extractions_reused"]  # fmt: skip


def preprocessed_run(tmp_path, run_id: str):
    """Settings and context of a run of three good documents, every stage before extraction done."""
    settings = platform_settings(tmp_path)
    store = open_context("setup", settings).store
    generate_corpus(3, CORPUS_SEED, lambda name, data: store.put_bytes(f"landing/{name}", data), include_bad=False)
    for name in UP_TO_EXTRACT:
        run_stage(name, run_id, settings=settings)
    return settings, open_context(run_id, settings)


def test_extraction_runs_once_per_document_however_often_the_task_runs(tmp_path):
    settings, ctx = preprocessed_run(tmp_path, "manual__resume")

    first = run_stage("extract_data", "manual__resume", settings=settings)
    rows = ctx.catalog.load_parts("extract_data").sort_values("sha256").reset_index(drop=True)
    assert first["documents"] >= 2 and reused(ctx) == []

    again = run_stage("extract_data", "manual__resume", settings=settings)  # the task retried

    assert reused(ctx) == [first["documents"]]
    assert again == first
    assert ctx.catalog.load_parts("extract_data").sort_values("sha256").reset_index(drop=True).equals(rows)

    run_stage("extract_data", "manual__resume", settings=settings, reprocess=True)
    assert reused(ctx) == [first["documents"]]  # reprocess read every page again


def test_a_torn_saved_extraction_is_read_again_not_trusted(tmp_path):
    """Saved extractions are a cache, written without waiting for the disk: one a power failure
    left half-written counts as missing."""
    settings, ctx = preprocessed_run(tmp_path, "manual__torn")
    store = ctx.store
    first = run_stage("extract_data", "manual__torn", settings=settings)
    saved = sorted(info.key for info in store.list(f"{settings.prefixes.runs}/_extractions/"))
    store.put_bytes(saved[0], store.get_bytes(saved[0])[:40])

    again = run_stage("extract_data", "manual__torn", settings=settings)

    assert reused(ctx) == [first["documents"] - 1]
    assert again == first
    assert store.get_bytes(saved[0]).endswith(b"}")  # saved whole again
