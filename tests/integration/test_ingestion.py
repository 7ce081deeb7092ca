"""The whole chain (CLI runner) on the sample corpus, on the embedded default and on a
real S3 server + real Postgres: quarantine reasons, counts, idempotency."""

import hashlib
import json

import pytest

from mlops.io.metadata import MetadataStore
from mlops.io.objects import S3Store, open_object_store
from mlops.pipeline import run_all
from tests.fixtures.hostile_landing import (
    IGNORED_NAMES,
    ODD_NAMES,
    PASSWD,
    S3_ODD_NAMES,
    build_special_entries,
    files_holding,
    no_hang,
    put_as_named,
)

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


def test_hostile_landing_entries_are_recorded_and_the_documents_beside_them_processed(
    corpus, backend_settings, tmp_path
):
    settings = backend_settings
    store = open_object_store(settings)
    corpus.upload(store)
    special = {}
    if not isinstance(store, S3Store):  # links, FIFOs, devices and sockets exist on file systems only
        special = build_special_entries(store.root / "landing", tmp_path / "outside")
    names = S3_ODD_NAMES if isinstance(store, S3Store) else ODD_NAMES
    clean_pdf = next(
        name
        for name, label in sorted(corpus.labels.items())
        if name.endswith(".pdf") and not label["expected_quarantine_reason"] and not label["duplicate_of"]
    )
    real, *junk = names  # the first odd name carries a real document, the others bytes that are none
    put_as_named(
        store, f"landing/{real}", (corpus.directory / clean_pdf).read_bytes() + b"\n%under an odd name\n"
    )
    for number, name in enumerate(junk):
        put_as_named(store, f"landing/{name}", f"not a document {number}".encode())
    for name in IGNORED_NAMES:
        put_as_named(store, f"landing/{name}", b"editor litter")

    with no_hang(900):
        summary = run_all("run-1", settings)["documents"]

    assert summary["refused"] == len(special)
    assert summary["ignored"] == len(IGNORED_NAMES) + 1  # and labels.jsonl
    assert summary["seen"] == len(corpus.labels) + len(names)
    metadata = MetadataStore.from_settings(settings)
    rows = {row["original_filename"]: row for row in metadata.documents()}
    assert rows[names[real]]["status"] == "stored"
    assert {names[name]: rows[names[name]]["quarantine_reason"] for name in junk} == {
        names[name]: "unsupported_format" for name in junk
    }
    assert {names[name] for name in junk} <= set(quarantined(store, settings))
    refused = {event["details"]["name"] for event in metadata.events("run-1") if event["event"] == "refused"}
    assert refused == {f"landing/{name}" for name in special}
    assert hashlib.sha256(PASSWD.read_bytes()).hexdigest() not in {row["sha256"] for row in rows.values()}
    if special:
        assert files_holding(settings.data_dir, PASSWD.read_bytes().splitlines()[0]) == []

    with no_hang(300):
        second = run_all("run-2", settings)["documents"]
    assert second["new"] == 0 and second["skipped"] == summary["seen"] and second["refused"] == len(special)
