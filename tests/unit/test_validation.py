"""Validation rules on real generated files, and the sandbox that contains hostile parsers."""

import sys
import types
from pathlib import Path

import pytest

from mlops.config import load_settings
from mlops.documents import InspectJob, inspect_document
from mlops.models import DocumentFormat, QuarantineReason
from mlops.workers import WorkerPoolError, run_sandboxed
from tests.fixtures.platform import TEST_MAX_FILE_BYTES
from tests.unit import hostile


def inspect(path: Path, name: str | None = None, max_pages: int = 200):
    limits = load_settings().limits
    job = InspectJob("0" * 64, name or path.name, path.read_bytes(), max_pages, limits.max_image_pixels, 300)
    return inspect_document(job)


def test_every_injected_bad_file_gets_its_reason(corpus):
    for name in corpus.labels:
        expected = corpus.labels[name]["expected_quarantine_reason"]
        if expected in (None, "too_large"):  # too_large is decided on size before opening
            continue
        outcome = inspect(corpus.directory / name)
        assert not outcome.accepted, name
        assert outcome.quarantine_reason == expected, (name, outcome.detail)
        assert outcome.detail


def test_good_documents_are_accepted_with_format_and_pages(corpus):
    good = [name for name, label in corpus.labels.items() if label["expected_quarantine_reason"] is None]
    assert good
    for name in good:
        outcome = inspect(corpus.directory / name)
        assert outcome.accepted, (name, outcome.detail)
        assert outcome.format == corpus.labels[name]["format"]
        assert outcome.pages == corpus.labels[name]["pages"]


def test_page_limit_and_renamed_content(corpus):
    multi_page = next(name for name, label in corpus.labels.items()
                      if label["format"] == "tiff" and label["pages"] > 1)
    outcome = inspect(corpus.directory / multi_page, max_pages=1)
    assert outcome.quarantine_reason is QuarantineReason.TOO_MANY_PAGES

    pdf = next(name for name, label in corpus.labels.items()
               if label["format"] == "pdf" and label["expected_quarantine_reason"] is None)
    outcome = inspect(corpus.directory / pdf, name="statement.jpg")
    assert outcome.quarantine_reason is QuarantineReason.EXTENSION_MISMATCH
    assert "pdf" in outcome.detail and ".jpg" in outcome.detail
    assert inspect(corpus.directory / pdf, name="STATEMENT.PDF").format is DocumentFormat.PDF


def test_oversized_sample_file_is_just_over_the_limit(corpus):
    (name,) = corpus.with_reason("too_large")
    assert (corpus.directory / name).stat().st_size == TEST_MAX_FILE_BYTES + 1


def test_every_failure_in_a_worker_is_a_verdict_on_its_own_document_and_the_rest_go_on():
    jobs = [1, "exit", 2, "type_error", 3, "segfault", 4, "hang", 5, "balloon", "unpicklable", 6]
    results = list(run_sandboxed(hostile.mixed, jobs, total=len(jobs), workers=2, timeout_seconds=3,
                                 memory_mb=512, desc="t"))

    assert [job for job, _ in results] == jobs
    assert [result for job, result in results if isinstance(job, int)] == [2, 4, 6, 8, 10, 12]
    verdicts = {job: (result.reason, result.detail) for job, result in results if isinstance(job, str)}
    assert verdicts == {
        "exit": (QuarantineReason.RESOURCE_LIMIT, "worker died (exit code 3)"),
        "type_error": (QuarantineReason.CORRUPT, "the parser failed: TypeError: Missing dimensions"),
        "segfault": (QuarantineReason.RESOURCE_LIMIT, "worker died (signal SIGSEGV)"),
        "hang": (QuarantineReason.TIMEOUT, "no result within 3 s"),
        "balloon": (QuarantineReason.RESOURCE_LIMIT, "worker memory cap exceeded"),
        "unpicklable": (QuarantineReason.CORRUPT, verdicts["unpicklable"][1]),
    }
    assert "pickle" in verdicts["unpicklable"][1]


def test_one_worker_holds_one_document_at_a_time():
    pulled = []

    def jobs():
        for job in [1, "exit", 2]:
            pulled.append(job)
            yield job

    for job, _ in run_sandboxed(hostile.mixed, jobs(), total=3, workers=1, timeout_seconds=5, memory_mb=512, desc="t"):
        assert pulled[-1] == job  # the next job is pulled only after this result is handed over


def test_a_worker_that_cannot_start_is_our_error_not_a_verdict_on_a_document(monkeypatch):
    vanishing = types.ModuleType("mlops_test_vanishing")  # importable here, not in the worker
    vanishing.work = types.FunctionType(hostile.double.__code__, {}, "work")
    vanishing.work.__module__, vanishing.work.__qualname__ = vanishing.__name__, "work"
    monkeypatch.setitem(sys.modules, vanishing.__name__, vanishing)

    with pytest.raises(WorkerPoolError, match="before it was ready for a document"):
        list(run_sandboxed(vanishing.work, [1], total=1, workers=1, timeout_seconds=5, memory_mb=512, desc="t"))


def test_a_worker_terminated_from_outside_stops_the_run_instead_of_blaming_its_document():
    with pytest.raises(WorkerPoolError, match="SIGTERM"):
        list(run_sandboxed(hostile.mixed, [1, "sigterm", 2], total=3, workers=1, timeout_seconds=5, memory_mb=512,
                           desc="t"))
