"""LocalDirStore: the embedded object store must behave like S3 and never corrupt or escape its root."""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mlops.config import load_settings
from mlops.errors import ObjectNotFound
from mlops.io import objects
from mlops.io.objects import TEMP_PREFIX, LocalDirStore, open_object_store, open_target, validate_key


@pytest.fixture
def store(tmp_path: Path) -> LocalDirStore:
    return LocalDirStore(tmp_path / "objects")


def leftover_temp_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.name.startswith(TEMP_PREFIX)]


def test_round_trip_and_uri(store: LocalDirStore) -> None:
    assert store.put_bytes("raw/ab/doc.pdf", b"%PDF-1.7 body") is True
    assert store.get_bytes("raw/ab/doc.pdf") == b"%PDF-1.7 body"
    assert store.exists("raw/ab/doc.pdf") and not store.exists("raw/ab/other.pdf")
    assert (store.root / "raw" / "ab" / "doc.pdf").read_bytes() == b"%PDF-1.7 body"
    assert store.uri("raw/ab/doc.pdf") == (store.root / "raw/ab/doc.pdf").as_uri()


def test_overwrite_replaces_content(store: LocalDirStore) -> None:
    store.put_bytes("k", b"old")
    store.put_bytes("k", b"new")
    assert store.get_bytes("k") == b"new"


def test_create_only_put_refuses_existing_key(store: LocalDirStore) -> None:
    assert store.put_bytes("runs/1/manifest.json", b"first", if_absent=True) is True
    assert store.put_bytes("runs/1/manifest.json", b"second", if_absent=True) is False
    assert store.get_bytes("runs/1/manifest.json") == b"first"
    assert leftover_temp_files(store.root) == []


def test_concurrent_create_only_writers_have_exactly_one_winner(store: LocalDirStore) -> None:
    def write(writer: int) -> bool:
        return store.put_bytes("lock", f"writer {writer}".encode(), if_absent=True)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(write, range(32)))
    assert results.count(True) == 1
    winner = results.index(True)
    assert store.get_bytes("lock") == f"writer {winner}".encode()


def test_listing_is_sorted_recursive_and_treats_prefix_as_folder(store: LocalDirStore) -> None:
    for key in ["a/z", "a/b/c", "ab/x", "a/a", "b"]:
        store.put_bytes(key, key.encode())
    assert [info.key for info in store.list()] == ["a/a", "a/b/c", "a/z", "ab/x", "b"]
    assert [info.key for info in store.list("a")] == ["a/a", "a/b/c", "a/z"]
    assert [info.key for info in store.list("a/")] == ["a/a", "a/b/c", "a/z"]
    assert [info.key for info in store.list("a/b")] == ["a/b/c"]
    assert list(store.list("missing")) == []
    assert list(store.list("b")) == []  # "b" is an object, not a folder


def test_listing_reports_size_md5_etag_and_mtime(store: LocalDirStore) -> None:
    store.put_bytes("doc", b"hello world")
    (info,) = store.list()
    assert info.size == 11
    assert info.etag == hashlib.md5(b"hello world").hexdigest()
    assert info.last_modified.timestamp() == pytest.approx((store.root / "doc").stat().st_mtime)
    assert info.last_modified.tzinfo is not None


def test_a_rescan_reads_only_the_files_that_changed(store: LocalDirStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(objects, "ETAG_CACHE_SETTLE_NS", 0)  # files are cached once 2 s old
    for name in ("a.pdf", "b.pdf", "c.pdf"):
        store.put_bytes(f"landing/{name}", name.encode() * 100)
    first = {info.key: info.etag for info in store.list("landing", remember_etags=True)}
    opened: list[str] = []
    open_regular = objects._open_regular
    monkeypatch.setattr(objects, "_open_regular", lambda path: opened.append(path.name) or open_regular(path))

    assert {info.key: info.etag for info in store.list("landing", remember_etags=True)} == first
    assert opened == []  # nothing read again
    time.sleep(0.05)  # past the file system's clock tick
    (store.root / "landing" / "b.pdf").write_bytes(b"B.PDF" * 100)  # same size, new content
    rescanned = {info.key: info.etag for info in store.list("landing", remember_etags=True)}

    assert opened == ["b.pdf"]
    assert rescanned == first | {"landing/b.pdf": hashlib.md5(b"B.PDF" * 100).hexdigest()}
    assert [info.key for info in store.list()] == sorted(first)  # the cache is not an object
    assert len(opened) == 4  # without remember_etags, every file is read
    with pytest.raises(ValueError, match="cache file name"):
        store.get_bytes(objects.ETAG_CACHE)


def test_a_file_changed_in_the_last_seconds_is_read_again(store: LocalDirStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.put_bytes("landing/fresh.pdf", b"%PDF-1.7 still being written")
    list(store.list("landing", remember_etags=True))
    opened: list[str] = []
    open_regular = objects._open_regular
    monkeypatch.setattr(objects, "_open_regular", lambda path: opened.append(path.name) or open_regular(path))

    list(store.list("landing", remember_etags=True))

    assert opened == ["fresh.pdf"]  # its times might not change if it is rewritten within a clock tick


def test_copy_move_delete(store: LocalDirStore) -> None:
    store.put_bytes("landing/doc.pdf", b"bytes")
    store.copy("landing/doc.pdf", "raw/doc.pdf")
    assert store.get_bytes("raw/doc.pdf") == b"bytes" and store.exists("landing/doc.pdf")
    store.move("landing/doc.pdf", "quarantine/doc.pdf")
    assert not store.exists("landing/doc.pdf")
    assert store.get_bytes("quarantine/doc.pdf") == b"bytes"
    store.delete("raw/doc.pdf")
    store.delete("raw/doc.pdf")  # missing key is not an error
    assert [info.key for info in store.list()] == ["quarantine/doc.pdf"]


def test_missing_keys_raise_object_not_found(store: LocalDirStore, tmp_path: Path) -> None:
    for action in (
        lambda: store.get_bytes("nope"),
        lambda: store.copy("nope", "dst"),
        lambda: store.move("nope", "dst"),
        lambda: store.download("nope", tmp_path / "out"),
    ):
        with pytest.raises(ObjectNotFound, match="nope"):
            action()
    assert not (tmp_path / "out").exists() and not store.exists("dst")


def test_streaming_read_and_download(store: LocalDirStore, tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    store.put_bytes("big.bin", payload)
    with store.open("big.bin") as stream:
        chunks = iter(lambda: stream.read(64 * 1024), b"")
        assert b"".join(chunks) == payload
    store.download("big.bin", tmp_path / "copies" / "big.bin")
    assert (tmp_path / "copies" / "big.bin").read_bytes() == payload


def test_put_file(store: LocalDirStore, tmp_path: Path) -> None:
    source = tmp_path / "scan.tiff"
    source.write_bytes(b"II*\x00" + os.urandom(1000))
    store.put_file("raw/scan.tiff", source, content_type="image/tiff")
    assert store.get_bytes("raw/scan.tiff") == source.read_bytes()


@pytest.mark.parametrize(
    "key", ["", "../x", "a/../../x", "/etc/passwd", "a\\b", "a\x00b", "a//b", "a/", "./a"]
)
def test_unsafe_keys_are_rejected(store: LocalDirStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        store.put_bytes(key, b"x")
    with pytest.raises(ValueError):
        validate_key(key)
    assert not (store.root.parent / "x").exists()


def test_key_through_symlink_outside_root_is_rejected(store: LocalDirStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store.root.mkdir(parents=True)
    (store.root / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="outside"):
        store.put_bytes("link/escaped", b"x")
    assert list(outside.iterdir()) == []


def test_failed_write_leaves_old_content_and_no_temp_file(store: LocalDirStore) -> None:
    store.put_bytes("report.json", b'{"complete": true}')
    with pytest.raises(TypeError):
        store.put_bytes("report.json", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.put_bytes("new.json", "not bytes")  # type: ignore[arg-type]
    assert store.get_bytes("report.json") == b'{"complete": true}'
    assert not store.exists("new.json")
    assert leftover_temp_files(store.root) == []
    assert [info.key for info in store.list()] == ["report.json"]


def test_settings_choose_local_directory(tmp_path: Path) -> None:
    store = open_object_store(load_settings(data_dir=tmp_path / "data"))
    assert isinstance(store, LocalDirStore)
    store.put_bytes("reports/r.html", b"<html>")
    assert (tmp_path / "data" / "reports" / "r.html").read_bytes() == b"<html>"


def test_cli_target_is_a_directory_or_the_configured_landing_area(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    store, prefix = open_target(str(tmp_path / "out"), settings)
    assert isinstance(store, LocalDirStore) and store.root == tmp_path / "out" and prefix == ""
    store, prefix = open_target(None, settings)
    assert store.uri(prefix) == (tmp_path / "data" / settings.prefixes.landing).as_uri()
