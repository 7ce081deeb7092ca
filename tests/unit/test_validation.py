"""Validation rules on real generated files, and the sandbox that contains hostile parsers."""

from pathlib import Path

import pytest

from mlops.documents import InspectJob, inspect_document
from mlops.models import DocumentFormat, QuarantineReason
from mlops.workers import WorkerFailure, run_sandboxed
from tests.fixtures.platform import TEST_MAX_FILE_BYTES
from tests.unit import hostile


def inspect(path: Path, name: str | None = None, max_pages: int = 200):
    job = InspectJob("0" * 64, name or path.name, path.read_bytes(), max_pages, 90_000_000)
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


@pytest.mark.parametrize(
    ("function", "reason"),
    [(hostile.hang, QuarantineReason.TIMEOUT), (hostile.balloon, QuarantineReason.RESOURCE_LIMIT)],
)
def test_a_hostile_parser_only_loses_its_own_worker(function, reason):
    results = list(run_sandboxed(function, [1, 2], total=2, workers=2, timeout_seconds=2, memory_mb=512, desc="t"))
    assert [job for job, _ in results] == [1, 2]
    assert all(isinstance(result, WorkerFailure) and result.reason is reason for _, result in results)
    # the pool is still usable afterwards
    assert list(run_sandboxed(hostile.double, [3], total=1, workers=1, timeout_seconds=5, memory_mb=512,
                              desc="t")) == [(3, 6)]
