"""The whole chain (CLI runner) on the sample corpus, on the embedded default and on a
real S3 server + real Postgres: quarantine reasons, counts, idempotency."""

import json

import pytest

from mlops.io.metadata import MetadataStore
from mlops.io.objects import open_object_store
from mlops.pipeline import run_all

pytestmark = pytest.mark.integration


def quarantined(store, settings):
    reasons = {}
    for info in store.list(settings.prefixes.quarantine):
        if info.key.endswith("/reason.json"):
            record = json.loads(store.get_bytes(info.key))
            reasons[record["original_filename"]] = record
    return reasons


def test_bad_input_is_quarantined_with_its_reason_and_counts_add_up(corpus, backend_settings):
    settings = backend_settings
    store = open_object_store(settings)
    corpus.upload(store)

    summary = run_all("run-1", settings)

    reasons = quarantined(store, settings)
    expected = {name: label["expected_quarantine_reason"] for name, label in corpus.labels.items()
                if label["expected_quarantine_reason"]}
    assert {name: record["reason"] for name, record in reasons.items()} == expected
    for name, record in reasons.items():
        # the bytes sit next to their reason, identical to what landed
        key = f"{settings.prefixes.quarantine}/{record['sha256']}/{name}"
        assert store.get_bytes(key) == (corpus.directory / name).read_bytes()

    counts = summary["documents"]
    duplicates = {name for name, label in corpus.labels.items() if label["duplicate_of"]}
    assert counts["seen"] == len(corpus.labels) == counts["new"]
    assert counts["skipped"] == 0
    assert counts["quarantined"] == len(expected)
    assert counts["duplicates"] == len(duplicates)
    assert counts["new"] == counts["accepted"] + counts["quarantined"] + counts["duplicates"]

    metadata = MetadataStore.from_settings(settings)
    rows = {row["original_filename"]: row for row in metadata.documents()}
    assert {name: row["quarantine_reason"] for name, row in rows.items() if row["quarantine_reason"]} == expected
    assert sum(row["status"] == "stored" for row in rows.values()) == counts["accepted"]
    assert len(metadata.processed_set(settings.pipeline_version)) == counts["accepted"]
    events = metadata.events("run-1")
    assert sum(event["event"] == "quarantined" for event in events) == len(expected)
    # the landing area is never modified
    assert sorted(info.key.split("/", 1)[1] for info in store.list("landing")) == sorted(
        [*corpus.labels, "labels.jsonl"]
    )


def test_second_run_registers_nothing_again(corpus, backend_settings):
    settings = backend_settings
    store = open_object_store(settings)
    corpus.upload(store)
    first = run_all("run-1", settings)["documents"]

    second = run_all("run-2", settings)["documents"]

    assert second["seen"] == first["seen"]
    assert second["skipped"] == first["seen"]
    assert second["new"] == second["accepted"] == second["quarantined"] == second["duplicates"] == 0
    metadata = MetadataStore.from_settings(settings)
    assert len(metadata.documents()) == first["seen"] - first["duplicates"]
    assert len(metadata.landing_objects("run-2")) == 0
    assert metadata.get_run("run-2")["status"] == "success"
