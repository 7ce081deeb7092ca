"""A landing area that cannot be turned against us: links, FIFOs, devices and sockets are
recorded and refused without being opened or followed, odd names become safe keys (the original
kept for display), ignore patterns cannot swallow documents, and the listing is bounded."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from mlops.errors import ObjectStoreError
from mlops.io.metadata import MetadataStore
from mlops.io.objects import LocalDirStore, ObjectInfo, RefusedEntry, S3Store, safe_key, validate_key
from mlops.stages import open_context, run_stage
from tests.fixtures.hostile_landing import (
    IGNORED_NAMES,
    ODD_NAMES,
    PASSWD,
    build_special_entries,
    files_holding,
    no_hang,
)
from tests.fixtures.platform import platform_settings


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "landing"
    path.mkdir(parents=True)
    return path


def test_listing_refuses_what_is_not_a_regular_file_without_opening_it(landing: Path, tmp_path: Path) -> None:
    special = build_special_entries(landing, tmp_path / "outside")
    (landing / "good.pdf").write_bytes(b"%PDF-1.4 good")
    store = LocalDirStore(tmp_path / "data")

    with no_hang(20):
        entries = list(store.scan("landing"))

    refused = {entry.name: entry for entry in entries if isinstance(entry, RefusedEntry)}
    assert {name.removeprefix("landing/"): entry.reason for name, entry in refused.items()} == special
    assert refused["landing/fifo.pdf"].detail == "a FIFO"
    assert refused["landing/passwd.pdf"].detail == "a symbolic link"
    assert [entry.key for entry in entries if isinstance(entry, ObjectInfo)] == ["landing/good.pdf"]
    assert [info.key for info in store.list("landing")] == ["landing/good.pdf"]


def test_odd_names_get_safe_keys_and_keep_their_name(landing: Path, tmp_path: Path) -> None:
    for number, name in enumerate(ODD_NAMES):
        (landing / name).write_bytes(f"document {number}".encode())
    store = LocalDirStore(tmp_path / "data")

    listed = list(store.list("landing"))

    assert sorted(info.name for info in listed) == sorted(ODD_NAMES.values())
    for info in listed:
        assert validate_key(info.key) == info.key
        with store.open(info) as stream:
            assert stream.read().startswith(b"document ")
    assert {info.key for info in listed} >= {
        "landing/..%5Cevil.pdf",
        "landing/ctl%01%1B.pdf",
        "landing/bad%FF%FE.pdf",
    }


def test_safe_key_leaves_ordinary_names_alone() -> None:
    for name in ("landing/doc-0001.pdf", "landing/José Núñez (2).pdf", "raw/ab/abcdef"):
        assert safe_key(name) == name


def test_a_file_swapped_for_a_fifo_after_listing_is_not_opened(landing: Path, tmp_path: Path) -> None:
    (landing / "doc.pdf").write_bytes(b"%PDF-1.4")
    store = LocalDirStore(tmp_path / "data")
    (info,) = store.list("landing")
    (landing / "doc.pdf").unlink()
    os.mkfifo(landing / "doc.pdf")
    with no_hang(10), pytest.raises(KeyError, match="not a regular file"):
        store.get_bytes(info.key)


def test_listing_past_its_deadline_names_the_key_it_reached(landing: Path, tmp_path: Path) -> None:
    (landing / "doc.pdf").write_bytes(b"%PDF-1.4")
    store = LocalDirStore(tmp_path / "data")
    with pytest.raises(ObjectStoreError, match=r"landing/doc\.pdf.*LISTING_TIMEOUT_SECONDS"):
        list(store.scan("landing", deadline=time.monotonic() - 1))


def test_s3_keys_a_server_could_resolve_elsewhere_are_refused() -> None:
    """The real S3 server of the integration tests refuses such keys itself, so a stub lists them."""

    class Listing:
        def paginate(self, **_: object) -> list[dict[str, object]]:
            keys = [
                "landing/../escape.pdf",
                "landing//double.pdf",
                "landing/./dot.pdf",
                "landing/sub/",
                "landing/ok.pdf",
            ]
            return [
                {
                    "Contents": [
                        {
                            "Key": key,
                            "Size": 0 if key.endswith("/") else 3,
                            "ETag": '"e"',
                            "LastModified": None,
                        }
                        for key in keys
                    ]
                }
            ]

    class Client:
        meta = type("Meta", (), {"endpoint_url": "http://stub"})

        def get_paginator(self, _: str) -> Listing:
            return Listing()

    entries = list(S3Store("bucket", Client()).scan("landing"))

    assert [(entry.name, entry.reason) for entry in entries if isinstance(entry, RefusedEntry)] == [
        ("landing/../escape.pdf", "unsafe_name"),
        ("landing//double.pdf", "unsafe_name"),
        ("landing/./dot.pdf", "unsafe_name"),
    ]
    assert [entry.key for entry in entries if isinstance(entry, ObjectInfo)] == ["landing/ok.pdf"]


def test_acquire_records_and_refuses_hostile_entries_and_takes_the_documents_beside_them(
    landing: Path, tmp_path: Path
) -> None:
    special = build_special_entries(landing, tmp_path / "outside")
    documents = {
        name: f"%PDF-1.4 document {number}".encode() for number, name in enumerate([*ODD_NAMES, "good.pdf"])
    }
    for name, data in documents.items():
        (landing / name).write_bytes(data)
    for name in (*IGNORED_NAMES, "labels.jsonl"):
        (landing / name).write_bytes(b"not a document")
    settings = platform_settings(tmp_path)

    with no_hang(60):
        summary = run_stage("acquire_documents", "run-1", settings=settings)

    assert summary["refused"] == len(special) and summary["refused_reasons"] == {
        "not_a_regular_file": len(special)
    }
    assert summary["ignored"] == len(IGNORED_NAMES) + 1
    assert summary["seen"] == summary["new"] == summary["documents"] == len(documents)
    metadata = MetadataStore.from_settings(settings)
    rows = {row["original_filename"]: row for row in metadata.documents()}
    assert set(rows) == {*ODD_NAMES.values(), "good.pdf"}
    assert {row["sha256"] for row in rows.values()} == {
        hashlib.sha256(data).hexdigest() for data in documents.values()
    }
    refusals = {
        event["details"]["name"]: event["details"]["reason"]
        for event in metadata.events("run-1")
        if event["event"] == "refused"
    }
    assert refusals == {f"landing/{name}": reason for name, reason in special.items()}
    ctx = open_context("run-1", settings)
    set_aside = {
        row["name"]: row["reason"] for row in ctx.catalog.load_records("acquire_documents/set_aside")
    }
    assert set_aside == {**refusals, **{name: "ignored" for name in (*IGNORED_NAMES, "labels.jsonl")}}
    # nothing behind a link was read: not the password file, not the files outside the root
    passwd_line = PASSWD.read_bytes().splitlines()[0]
    assert files_holding(tmp_path / "data", passwd_line) == []
    assert files_holding(tmp_path / "data", b"outside the landing root") == []
    assert files_holding(tmp_path / "data", b"behind a linked folder") == []

    metadata.release_lease("run-1")  # the first run stopped without finishing
    with no_hang(60):
        second = run_stage("acquire_documents", "run-2", settings=settings)
    # the unfinished first run's documents are resumed, none registered twice; refusals recorded again
    assert second["documents"] == len(documents) and second["duplicates"] == 0
    assert len(metadata.documents()) == len(documents) and second["refused"] == len(special)
