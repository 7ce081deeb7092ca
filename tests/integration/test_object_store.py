"""The same behaviour from both object-store backends: a local directory and a real S3 server."""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mlops.config import load_settings
from mlops.errors import ObjectNotFound, ObjectStoreError
from mlops.io.objects import LocalDirStore, ObjectStore, S3Store, open_object_store, open_target, validate_key
from tests.fixtures.hostile_landing import ODD_NAMES, S3_ODD_NAMES, put_as_named
from tests.fixtures.s3_server import SeaweedS3, free_ports

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalDirStore(tmp_path / "objects")
    return request.getfixturevalue("s3_store")


def test_put_get_round_trip(store: ObjectStore) -> None:
    assert store.put_bytes("raw/ab/doc.pdf", b"%PDF-1.7", content_type="application/pdf") is True
    assert store.get_bytes("raw/ab/doc.pdf") == b"%PDF-1.7"
    store.put_bytes("raw/ab/doc.pdf", b"%PDF-2.0")
    assert store.get_bytes("raw/ab/doc.pdf") == b"%PDF-2.0"


def test_create_only_put_is_refused_on_existing_key(store: ObjectStore) -> None:
    assert store.put_bytes("runs/7/manifest.json", b"first", if_absent=True) is True
    assert store.put_bytes("runs/7/manifest.json", b"second", if_absent=True) is False
    assert store.get_bytes("runs/7/manifest.json") == b"first"


def test_concurrent_create_only_writers_have_exactly_one_winner(store: ObjectStore) -> None:
    def write(writer: int) -> bool:
        return store.put_bytes("runs/8/claim", f"writer {writer}".encode(), if_absent=True)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(write, range(16)))
    assert results.count(True) == 1
    assert store.get_bytes("runs/8/claim") == f"writer {results.index(True)}".encode()


def test_listing_more_than_one_page_is_complete_sorted_and_scoped(store: ObjectStore) -> None:
    keys = [f"landing/{number:05d}.txt" for number in range(1100)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: store.put_bytes(key, key.encode()), keys))
    store.put_bytes("landing-other/x.txt", b"sibling with a common name prefix")
    store.put_bytes("landing.txt", b"object named like the folder")

    listed = list(store.list("landing"))
    assert [info.key for info in listed] == keys
    assert listed[5].size == len(keys[5])
    assert listed[5].etag == hashlib.md5(keys[5].encode()).hexdigest()
    assert len(list(store.list())) == 1102
    assert [info.key for info in store.list("landing-other/")] == ["landing-other/x.txt"]


def test_copy_move_delete_exists(store: ObjectStore) -> None:
    store.put_bytes("landing/a.png", b"\x89PNG")
    store.copy("landing/a.png", "raw/a.png")
    assert store.exists("landing/a.png") and store.get_bytes("raw/a.png") == b"\x89PNG"
    store.move("landing/a.png", "quarantine/a.png")
    assert not store.exists("landing/a.png")
    assert store.get_bytes("quarantine/a.png") == b"\x89PNG"
    store.delete("raw/a.png")
    store.delete("raw/a.png")
    assert not store.exists("raw/a.png")
    assert [info.key for info in store.list()] == ["quarantine/a.png"]


def test_streaming_read(store: ObjectStore) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 5)
    store.put_bytes("big.bin", payload)
    with store.open("big.bin") as stream:
        first = stream.read(1024)
        rest = b"".join(iter(lambda: stream.read(256 * 1024), b""))
    assert first + rest == payload


def test_a_multipart_upload_left_by_a_killed_writer_is_aborted_once_it_is_stale(s3_store: S3Store) -> None:
    client, bucket = s3_store.client, s3_store.bucket
    dead = client.create_multipart_upload(Bucket=bucket, Key="raw/ab/scan.tiff")["UploadId"]
    client.upload_part(Bucket=bucket, Key="raw/ab/scan.tiff", UploadId=dead, PartNumber=1, Body=b"borrower " * 1000)
    elsewhere = client.create_multipart_upload(Bucket=bucket, Key="landing/upload.pdf")["UploadId"]

    def open_uploads() -> set[str]:
        return {upload["UploadId"] for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}

    assert s3_store.remove_temp_files("raw", older_than_seconds=3600) == []  # may still be writing
    assert open_uploads() == {dead, elsewhere}
    time.sleep(1.1)

    assert s3_store.remove_temp_files("raw", older_than_seconds=1) == ["raw/ab/scan.tiff"]
    assert open_uploads() == {elsewhere}  # outside the prefix: not the pipeline's
    assert not s3_store.exists("raw/ab/scan.tiff")
    client.abort_multipart_upload(Bucket=bucket, Key="landing/upload.pdf", UploadId=elsewhere)


def test_large_file_upload_and_download(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "scan.tiff"
    source.write_bytes(os.urandom(20 * 1024 * 1024))
    store.put_file("raw/scan.tiff", source, content_type="image/tiff")
    (info,) = store.list("raw")
    assert info.size == 20 * 1024 * 1024
    if isinstance(store, S3Store):
        assert info.etag.endswith("-3"), "a 20 MB file should go up as three 8 MB multipart parts"
    store.download("raw/scan.tiff", tmp_path / "back" / "scan.tiff")
    assert (tmp_path / "back" / "scan.tiff").read_bytes() == source.read_bytes()


def test_missing_key_raises_object_not_found(store: ObjectStore, tmp_path: Path) -> None:
    assert not store.exists("raw/missing.pdf")
    with pytest.raises(ObjectNotFound, match="raw/missing.pdf"):
        store.get_bytes("raw/missing.pdf")
    with pytest.raises(ObjectNotFound):
        store.copy("raw/missing.pdf", "raw/copy.pdf")
    with pytest.raises(ObjectNotFound):
        store.download("raw/missing.pdf", tmp_path / "out.pdf")
    assert not (tmp_path / "out.pdf").exists()
    store.delete("raw/missing.pdf")


def test_unsafe_key_is_rejected_by_both_backends(store: ObjectStore) -> None:
    with pytest.raises(ValueError, match=r"\.\./x"):
        store.put_bytes("../x", b"x")


def test_odd_names_are_listed_under_safe_keys_and_read_as_stored(store: ObjectStore) -> None:
    names = S3_ODD_NAMES if isinstance(store, S3Store) else ODD_NAMES
    contents = {name: f"document {number}".encode() for number, name in enumerate(names)}
    for name, data in contents.items():
        put_as_named(store, f"landing/{name}", data)
    put_as_named(store, "landing/folder-marker/", b"")  # what S3 consoles create for a folder

    listed = list(store.list("landing"))

    assert sorted(info.name for info in listed) == sorted(names.values())
    shown = {shown: name for name, shown in names.items()}
    for number, info in enumerate(listed):
        assert validate_key(info.key) == info.key
        store.copy(info, f"raw/{number}")
        assert store.get_bytes(f"raw/{number}") == contents[shown[info.name]]
    assert "landing/ctl%01%1B.pdf" in {info.key for info in listed}


def test_wrong_credentials_fail_with_an_explanation(s3_server: SeaweedS3, s3_store: S3Store) -> None:
    intruder = S3Store.connect(
        s3_store.bucket, **s3_server.client_options(secret_access_key="wrong", max_attempts=2)
    )
    with pytest.raises(ObjectStoreError) as caught:
        intruder.put_bytes("raw/x", b"x")
    message = str(caught.value)
    assert s3_store.bucket in message and s3_server.endpoint_url in message
    assert "SECRET_ACCESS_KEY" in message
    with pytest.raises(ObjectStoreError):
        list(intruder.list())


def test_missing_bucket_names_the_fix(s3_server: SeaweedS3) -> None:
    store = S3Store.connect("no-such-bucket-here", **s3_server.client_options())
    with pytest.raises(ObjectStoreError, match="ensure_bucket"):
        store.get_bytes("x")


def test_unreachable_endpoint_fails_after_retries() -> None:
    (closed_port,) = free_ports(1)
    endpoint = f"http://127.0.0.1:{closed_port}"
    store = S3Store.connect(
        "docs",
        endpoint_url=endpoint,
        access_key_id="a",
        secret_access_key="b",
        max_attempts=3,
        connect_timeout=1,
    )
    with pytest.raises(ObjectStoreError, match="after 3 attempts") as caught:
        store.put_bytes("raw/x", b"x")
    assert endpoint in str(caught.value) and "ENDPOINT_URL" in str(caught.value)


def test_settings_choose_s3_with_secret_credentials(s3_server: SeaweedS3, s3_store: S3Store) -> None:
    settings = load_settings(
        object_store={
            "backend": "s3",
            "bucket": s3_store.bucket,
            "endpoint_url": s3_server.endpoint_url,
            "access_key_id": s3_server.access_key,
            "secret_access_key": s3_server.secret_key,
        }
    )
    store = open_object_store(settings)
    assert isinstance(store, S3Store)
    store.put_bytes("reports/r.json", b"{}")
    assert s3_store.get_bytes("reports/r.json") == b"{}"
    assert store.uri("reports/r.json") == f"s3://{s3_store.bucket}/reports/r.json"


def test_settings_can_take_credentials_from_an_airflow_connection(
    s3_server: SeaweedS3, s3_store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = {
        "conn_type": "aws",
        "login": s3_server.access_key,
        "password": s3_server.secret_key,
        "extra": {"endpoint_url": s3_server.endpoint_url, "region_name": s3_server.region},
    }
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_S3", json.dumps(connection))
    settings = load_settings(
        object_store={"backend": "s3", "bucket": s3_store.bucket, "airflow_conn_id": "platform_s3"}
    )
    store = open_object_store(settings)
    store.put_bytes("via-airflow", b"ok")
    assert s3_store.get_bytes("via-airflow") == b"ok"


def test_cli_s3_target_creates_its_bucket(s3_server: SeaweedS3) -> None:
    settings = load_settings(
        object_store={
            "endpoint_url": s3_server.endpoint_url,
            "access_key_id": s3_server.access_key,
            "secret_access_key": s3_server.secret_key,
        }
    )
    store, prefix = open_target("s3://fresh-target-bucket/samples/", settings)
    assert isinstance(store, S3Store) and store.bucket == "fresh-target-bucket" and prefix == "samples"
    store.put_bytes(f"{prefix}/labels.jsonl", b"{}")
    assert [info.key for info in store.list(prefix)] == ["samples/labels.jsonl"]
