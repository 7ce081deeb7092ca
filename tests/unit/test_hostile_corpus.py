"""The hostile corpus (tests/unit/hostile_corpus.py) through validation and preprocessing: every
file gets its verdict, whatever the worker opened before it, the stages finish, and a document
that kills run after run is quarantined as poison so the next run finishes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mlops.config import load_settings
from mlops.documents import InspectJob, inspect_document
from mlops.errors import ConfigError
from mlops.io.metadata import MetadataStore
from mlops.io.objects import open_object_store
from mlops.models import QuarantineReason
from mlops.quarantine import run_untrusted
from mlops.run_data import acquired_documents, read_document
from mlops.stages import open_context, run_stage
from mlops.workers import run_sandboxed
from tests.fixtures.platform import TEST_MAX_FILE_BYTES, platform_settings
from tests.unit import hostile, hostile_corpus
from tests.unit.hostile_corpus import LARGEST_ACCEPTED_SIDE, fuzzed, one_page

REPO = Path(__file__).resolve().parents[2]
CORPUS = hostile_corpus.build()
LIMITS = load_settings().limits


def job(name: str, data: bytes) -> InspectJob:
    return InspectJob("0" * 64, name, data, LIMITS.max_pages, LIMITS.max_image_pixels, LIMITS.max_render_dpi)


def verdict(outcome) -> str | None:
    return None if outcome.accepted else outcome.quarantine_reason.value


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_hostile_file_gets_its_verdict(name):
    outcome = inspect_document(job(name, CORPUS[name].data))
    assert verdict(outcome) == CORPUS[name].reason, (CORPUS[name].why, outcome.detail)
    assert outcome.accepted or outcome.detail


def test_a_verdict_does_not_depend_on_what_the_worker_opened_before():
    password, broken = CORPUS["password.pdf"].data, CORPUS["broken-page-tree.pdf"].data
    fuzz = {f"fuzz-{seed}.pdf": fuzzed(CORPUS["owner-only-rc4.pdf"].data if seed % 2 else one_page(), seed)
            for seed in range(40)}
    fuzz |= {f"fuzz-{seed}.tiff": fuzzed(CORPUS["too-many-frames.tiff"].data[:4000], seed) for seed in range(10)}
    alone = {name: verdict(inspect_document(job(name, data))) for name, data in fuzz.items()}
    # one worker process: each document right after an encrypted one, in reverse order
    jobs = [job(name, data) for name, data in reversed(fuzz.items()) for name, data in
            (("password.pdf", password), (name, data))]
    jobs += [job("password.pdf", password), job("broken.pdf", broken)]
    after_encrypted = {
        work.filename: verdict(outcome)
        for work, outcome in run_sandboxed(inspect_document, jobs, total=len(jobs), workers=1, timeout_seconds=30,
                                           memory_mb=LIMITS.worker_memory_mb, desc="t")
    }
    assert after_encrypted["broken.pdf"] == "corrupt"
    assert after_encrypted["password.pdf"] == "encrypted"
    assert {name: after_encrypted[name] for name in fuzz} == alone
    assert set(alone.values()) <= {None, *QuarantineReason}
    assert {"corrupt", None} <= set(alone.values())


@pytest.fixture
def hostile_platform(tmp_path):
    settings = platform_settings(tmp_path)
    store = open_object_store(settings)
    for name, hostile_file in CORPUS.items():
        store.put_bytes(f"{settings.prefixes.landing}/{name}", hostile_file.data)
    return settings


def test_the_hostile_corpus_through_validation_and_preprocessing(hostile_platform):
    settings = hostile_platform
    run_stage("acquire_documents", "run-1", settings=settings)

    validated = run_stage("validate_documents", "run-1", settings=settings)
    preprocessed = run_stage("preprocess_documents", "run-1", settings=settings)

    metadata = MetadataStore.from_settings(settings)
    rows = {row["original_filename"]: row for row in metadata.documents()}
    assert {name: rows[name]["quarantine_reason"] for name in CORPUS} == {
        name: hostile_file.reason for name, hostile_file in CORPUS.items()
    }
    accepted = {name for name, hostile_file in CORPUS.items() if hostile_file.reason is None}
    assert validated["accepted"] == preprocessed["preprocessed"] == len(accepted)
    assert preprocessed["quarantined"] == 0  # validation let nothing through that exhausts a worker
    assert {name for name, row in rows.items() if row["status"] == "preprocessed"} == accepted
    assert metadata.document_attempts("validate_documents", [row["sha256"] for row in rows.values()]) == {}

    pages = run_table(settings, "run-1", "preprocess_documents/pages")
    size = {rows_by_sha(rows)[page["sha256"]]: (page["width_px"], page["height_px"]) for page in pages}
    assert size["sideways.jpg"] == (200, 400)  # EXIF orientation applied: upright, not as stored
    assert size["userunit-letter.pdf"] == (850, 1100)  # 8.5x11 inches at 100 DPI, not 12x16 pixels
    assert size["largest-accepted.png"] == (LARGEST_ACCEPTED_SIDE, LARGEST_ACCEPTED_SIDE)
    assert size["owner-only-aes.pdf"] == size["owner-only-rc4.pdf"] == (850, 1100)


def test_limits_that_disagree_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="raise worker_memory_mb to 3396 or lower max_image_pixels to 29,032,448"):
        load_settings(limits={"max_image_pixels": 90_000_000})
    with pytest.raises(ConfigError, match="extract.ocr_dpi=400 is above limits.max_render_dpi=300"):
        load_settings(extract={"ocr_dpi": 400})
    assert load_settings(limits={"max_image_pixels": 60_000_000, "worker_memory_mb": 2500}).limits


def rows_by_sha(rows: dict[str, dict]) -> dict[str, str]:
    return {row["sha256"]: name for name, row in rows.items()}


def run_table(settings, run_id: str, dataset: str) -> list[dict]:
    from mlops.io.catalog import Catalog

    table = Catalog(open_object_store(settings), settings.prefixes.runs, run_id).load_table(dataset)
    return table.to_dict("records")


def test_a_document_that_kills_run_after_run_is_poison_and_the_next_run_finishes(tmp_path):
    settings = platform_settings(tmp_path, workers=1)
    store = open_object_store(settings)
    pill = one_page() + hostile.PILL + b"\n"
    store.put_bytes("landing/pill.pdf", pill)
    store.put_bytes("landing/good.pdf", CORPUS["owner-only-aes.pdf"].data)
    run_stage("acquire_documents", "run-1", settings=settings)
    metadata = MetadataStore.from_settings(settings)
    rows = {row["original_filename"]: row["sha256"] for row in metadata.documents()}
    env = os.environ | {
        "MLOPS_DATA_DIR": str(settings.data_dir),
        "MLOPS_WORKERS": "1",
        "MLOPS_LIMITS__MAX_FILE_BYTES": str(TEST_MAX_FILE_BYTES),
    }

    for attempt in range(1, settings.limits.max_document_attempts + 1):
        code = "from tests.unit.hostile import validate_with_a_pill_that_never_returns as v; v('run-1')"
        run = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env)
        try:
            deadline = time.monotonic() + 60
            while metadata.document_attempts("validate_documents", [rows["pill.pdf"]]) != {rows["pill.pdf"]: attempt}:
                assert run.poll() is None and time.monotonic() < deadline, "the run was to hang on the pill"
                time.sleep(0.1)
        finally:
            run.kill()  # the kernel's OOM killer, say
            run.wait()

    summary = run_stage("validate_documents", "run-1", settings=settings)

    assert summary == {"validated": 2, "accepted": 1, "quarantined": 1}
    pill_row = metadata.get_document(rows["pill.pdf"])
    assert pill_row["quarantine_reason"] == "poison"
    assert "3 times" in pill_row["quarantine_detail"]
    assert metadata.get_document(rows["good.pdf"])["status"] == "accepted"
    assert metadata.document_attempts("validate_documents", rows.values()) == {}
    assert run_stage("preprocess_documents", "run-1", settings=settings)["preprocessed"] == 1


def test_a_run_stopped_while_busy_with_a_document_counts_that_one_only(tmp_path):
    settings = platform_settings(tmp_path, workers=2)
    store = open_object_store(settings)
    for title in ("one", "two", "three"):
        store.put_bytes(f"landing/{title}.pdf", one_page(title=title))
    run_stage("acquire_documents", "run-1", settings=settings)
    ctx = open_context("run-1", settings)
    docs = acquired_documents(ctx)

    results = run_untrusted(ctx, "validate_documents", inspect_document, docs,
                            lambda doc: replace(job(doc.original_filename, read_document(ctx, doc)), sha256=doc.sha256),
                            "t")
    busy_with, _ = next(results)
    results.close()  # the caller failed (a SIGTERM, say) while recording it

    shas = [doc.sha256 for doc in docs]
    assert ctx.metadata.document_attempts("validate_documents", shas) == {busy_with.sha256: 1}
