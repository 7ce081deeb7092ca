"""Object store: where document bytes, run datasets and reports live.

One interface, :class:`ObjectStore`, and two backends chosen by settings: :class:`LocalDirStore`
(a directory, the embedded default) and :class:`S3Store` (any S3 endpoint: MinIO, SeaweedFS, AWS).
Keys are relative, slash-separated paths checked by :func:`validate_key` on both backends, so a
key that works locally works on S3 and no key can escape the local root.

Listings are untrusted input (anyone who can write to the landing area names its entries):
:meth:`ObjectStore.scan` never opens or follows anything but a regular file, gives every entry a
safe key (:func:`safe_key`) and remembers its name as stored, and reports what it cannot read as a
:class:`RefusedEntry` with a reason instead of failing or hanging.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from mlops.errors import ObjectNotFound, ObjectStoreError

if TYPE_CHECKING:
    from mlops.config import ObjectStoreSettings, Settings

TEMP_PREFIX = ".tmp-objectstore-"
# The local store's etags of the folders listed with remember_etags, at its root: {key: [size,
# mtime_ns, ctime_ns, inode, md5]}. Not an object: no listing shows it and no key can address it.
ETAG_CACHE = ".objectstore-etags.json"
# A file changed within a clock tick of its last change keeps its times: cache settled files only.
ETAG_CACHE_SETTLE_NS = 2_000_000_000
CHUNK = 1024 * 1024
NOT_A_REGULAR_FILE = "not_a_regular_file"
UNREADABLE = "unreadable"
UNSAFE_NAME = "unsafe_name"


@dataclass(frozen=True)
class ObjectInfo:
    """A listed object. ``source`` is its name as stored when that is not a valid key (a file
    name with a backslash, control characters or bytes that are not UTF-8): pass the ObjectInfo
    itself to :meth:`ObjectStore.open` or :meth:`ObjectStore.copy` to read it."""

    key: str
    size: int
    etag: str
    last_modified: datetime
    source: str | None = None

    @property
    def path(self) -> str:
        """The name as stored, for people (see :func:`readable`)."""
        return readable(self.source or self.key)

    @property
    def name(self) -> str:
        """The original file name, for people."""
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class RefusedEntry:
    """A listing entry that is never read: ``reason`` is one of NOT_A_REGULAR_FILE, UNREADABLE,
    UNSAFE_NAME; ``name`` is its path under the listed prefix's root, readable."""

    name: str
    reason: str
    detail: str


def _escape(name: str, template: str, also: str = "") -> str:
    """Characters in ``also``, control characters and undecodable bytes (surrogate escapes, as
    os.fsdecode leaves them) written byte by byte with ``template``."""
    if name.isascii() and name.isprintable() and not any(char in name for char in also):
        return name  # the common case, without looking at each character
    return "".join(
        "".join(template.format(byte) for byte in char.encode("utf-8", "surrogateescape"))
        if char in also or unicodedata.category(char) in ("Cc", "Cs")
        else char
        for char in name
    )


def safe_key(name: str) -> str:
    """Any stored name as a valid key: backslashes, control characters and bytes that are not
    UTF-8 become %XX; every other name is its own key. (A name that already spells such an
    escape shares its key; identity is (key, etag), so two such files are still told apart.)"""
    return _escape(name, "%{:02X}", also="\\")


def readable(name: str) -> str:
    """A name fit for logs, reports and a text column: control characters and bytes that are
    not UTF-8 shown as \\xNN, everything else (backslashes too) as it is."""
    return _escape(name, "\\x{:02x}")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key; raise ValueError naming it otherwise."""
    problem = None
    if not isinstance(key, str) or not key:
        problem = "it is empty"
    elif key.startswith("/"):
        problem = "it is absolute (starts with '/')"
    elif safe_key(key) != key:
        problem = "it contains a backslash, a control character or a byte that is not UTF-8 (see safe_key)"
    elif _has_dot_segment(key):
        problem = "it has an empty, '.' or '..' path segment"
    if problem:
        raise ValueError(
            f"invalid object key {key!r}: {problem}. Use a relative path like 'raw/ab/abcd.pdf'."
        )
    return key


def _key_of(key: str | ObjectInfo) -> str:
    """The key to name an object by: a listed object's safe key, else ``key`` itself."""
    return key.key if isinstance(key, ObjectInfo) else key


def _stored_key(key: str | ObjectInfo) -> str:
    """The name to read: a listed object's name as stored (its listing vetted it), else a valid key."""
    return key.source or key.key if isinstance(key, ObjectInfo) else validate_key(key)


def _has_dot_segment(key: str) -> bool:
    return any(part in ("", ".", "..") for part in key.split("/"))


def _check_deadline(deadline: float | None, key: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise ObjectStoreError(
            f"listing ran out of time at {key!r}. Fix: raise MLOPS_LIMITS__LISTING_TIMEOUT_SECONDS "
            "or move finished files out of the landing area."
        )


def _folder(prefix: str) -> str:
    """A listing prefix names a folder: '' (everything) or 'a/b/'."""
    return validate_key(prefix.strip("/")) + "/" if prefix.strip("/") else ""


def _write_atomic(
    path: Path, write: Callable[[BinaryIO], Any], *, if_absent: bool = False, durable: bool = True
) -> bool:
    """Write via a temp file in the target's directory, fsync (if ``durable``), then publish it in one step.

    Readers never see a partial file. With ``if_absent`` the file is published by ``os.link``,
    which fails if the name exists, so of two concurrent writers exactly one wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide reports and datasets from other readers
            write(out)
            out.flush()
            if durable:
                os.fsync(out.fileno())
        if if_absent:
            try:
                os.link(temp, path)
            except FileExistsError:
                return False
        else:
            os.replace(temp, path)
        return True
    except OSError as error:
        if error.filename is None:  # a write or fsync that failed (a full disk): say where
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


class ObjectStore(ABC):
    """Bytes under keys. Missing keys raise ObjectNotFound; infrastructure faults ObjectStoreError."""

    @abstractmethod
    def put_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, content_type: str | None = None, durable: bool = True
    ) -> bool:
        """Store ``data``; with ``if_absent`` refuse to overwrite and return False if ``key`` exists.
        ``durable=False`` is for what can be computed again (a cache): a local disk does not wait for
        it to reach the platter, so a power failure may leave it torn."""

    @abstractmethod
    def put_file(self, key: str, path: str | os.PathLike[str], *, content_type: str | None = None) -> None:
        """Upload a local file (multipart on S3 for big files)."""

    @abstractmethod
    def open(self, key: str | ObjectInfo) -> AbstractContextManager[BinaryIO]:
        """Stream an object's bytes without loading them all (a listed object by its stored name)."""

    @abstractmethod
    def scan(
        self, prefix: str = "", deadline: float | None = None, *, remember_etags: bool = False
    ) -> Iterator[ObjectInfo | RefusedEntry]:
        """Every entry under folder ``prefix`` ('' for all), recursively, sorted by key: objects,
        and what cannot be read as one. Past ``deadline`` (time.monotonic()) it raises
        ObjectStoreError naming where it stopped. ``remember_etags``: a folder listed again and
        again (the landing area), whose etags a store that computes them should keep."""

    def list(self, prefix: str = "", *, remember_etags: bool = False) -> Iterator[ObjectInfo]:
        """Every object under folder ``prefix`` ('' for all), recursively, sorted by key."""
        entries = self.scan(prefix, remember_etags=remember_etags)
        return (entry for entry in entries if isinstance(entry, ObjectInfo))

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def copy(self, src: str | ObjectInfo, dst: str) -> None: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error."""

    @abstractmethod
    def uri(self, key: str | ObjectInfo) -> str:
        """Where the object lives, for humans and reports (file:// or s3://)."""

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()

    def download(self, key: str, path: str | os.PathLike[str]) -> None:
        """Copy an object to a local file; the file appears complete or not at all."""
        with self.open(key) as stream:
            _write_atomic(Path(path), lambda out: shutil.copyfileobj(stream, out, 1024 * 1024))

    def move(self, src: str, dst: str) -> None:
        self.copy(src, dst)
        self.delete(src)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under folder ``prefix``; return how many there were."""
        keys = [info.key for info in self.list(prefix)]
        for key in keys:
            self.delete(key)
        return len(keys)

    def remove_temp_files(self, prefix: str, older_than_seconds: float) -> list[str]:
        """Remove what a writer killed mid-write left under folder ``prefix`` (started more than
        ``older_than_seconds`` ago); return their keys."""
        return []


class LocalDirStore(ObjectStore):
    """Objects as files under ``root``. ETag is the MD5 of the content, like a single-part S3 PUT."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str | ObjectInfo) -> Path:
        path = self.root / _stored_key(key)
        not_an_object = path.name.startswith(TEMP_PREFIX) or path == self.root / ETAG_CACHE
        if not path.resolve().is_relative_to(self.root) or not_an_object:
            raise ValueError(
                f"invalid object key {_key_of(key)!r}: it leads outside {self.root} or is a temp or cache file name."
            )
        return path

    def put_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, content_type: str | None = None, durable: bool = True
    ) -> bool:
        return _write_atomic(self._path(key), lambda out: out.write(data), if_absent=if_absent, durable=durable)

    def put_file(self, key: str, path: str | os.PathLike[str], *, content_type: str | None = None) -> None:
        with open(path, "rb") as source:
            _write_atomic(self._path(key), lambda out: shutil.copyfileobj(source, out, 1024 * 1024))

    @contextlib.contextmanager
    def open(self, key: str | ObjectInfo) -> Iterator[BinaryIO]:
        try:
            stream = _open_regular(self._path(key))
        except (FileNotFoundError, NotADirectoryError, NotARegularFile):
            raise ObjectNotFound(f"{self.uri(key)} does not exist or is not a regular file") from None
        with stream:
            yield stream

    def scan(
        self, prefix: str = "", deadline: float | None = None, *, remember_etags: bool = False
    ) -> Iterator[ObjectInfo | RefusedEntry]:
        """Symbolic links (to files or folders), FIFOs, devices and sockets are refused from
        their lstat alone: never opened, never followed. The etag is the file's MD5; with
        ``remember_etags`` it is kept in :data:`ETAG_CACHE` and read again only for files that
        changed."""
        folder = _folder(prefix)
        entries = sorted(_walk(self._path(folder.rstrip("/")) if folder else self.root, self.root))
        cached = self._etag_cache() if remember_etags else {}
        known = {key: entry for key, entry in cached.items() if not key.startswith(folder)}
        for key, name, refusal in entries:
            _check_deadline(deadline, key)
            if refusal:
                yield RefusedEntry(readable(name), *refusal)
                continue
            try:
                etag, info = self._etag(self.root / name, cached.get(key), key, deadline)
            except FileNotFoundError:
                continue  # gone since the directory was read
            except OSError as error:  # NotARegularFile too: replaced since the directory was read
                yield RefusedEntry(readable(name), UNREADABLE, readable(str(error)))
                continue
            if time.time_ns() - max(info.st_mtime_ns, info.st_ctime_ns) > ETAG_CACHE_SETTLE_NS:
                known[key] = [*_signature(info), etag]
            modified = datetime.fromtimestamp(info.st_mtime, UTC)
            yield ObjectInfo(key, info.st_size, etag, modified, None if name == key else name)
        if remember_etags and known != cached:
            with contextlib.suppress(OSError):  # a cache: a full or read-only disk only costs the next scan
                _write_atomic(self.root / ETAG_CACHE, lambda out: out.write(json.dumps(known).encode()))

    def _etag(self, path: Path, cached: list[Any] | None, key: str, deadline: float | None) -> tuple[str, os.stat_result]:
        """The file's MD5, read again only if its size, times or inode changed since it was cached:
        a rerun over a large landing area reads none of its files."""
        info = os.lstat(path)
        if cached is not None and cached[:-1] == _signature(info) and stat.S_ISREG(info.st_mode):
            return cached[-1], info
        with _open_regular(path) as stream:
            info = os.fstat(stream.fileno())
            digest = hashlib.md5()
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                _check_deadline(deadline, key)
        return digest.hexdigest(), info

    def _etag_cache(self) -> dict[str, list[Any]]:
        try:
            cached = json.loads((self.root / ETAG_CACHE).read_bytes())
        except (OSError, ValueError):
            return {}
        return cached if isinstance(cached, dict) else {}

    def exists(self, key: str) -> bool:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            return stat.S_ISREG(os.lstat(self._path(key)).st_mode)
        return False

    def copy(self, src: str | ObjectInfo, dst: str) -> None:
        with self.open(src) as stream:
            _write_atomic(self._path(dst), lambda out: shutil.copyfileobj(stream, out, 1024 * 1024))

    def move(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        if not source.is_file():
            raise ObjectNotFound(f"{self.uri(src)} does not exist")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        """The folder goes as a whole: its temp files and emptied subfolders too."""
        count = super().delete_prefix(prefix)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self._path(_folder(prefix).rstrip("/")))
        return count

    def remove_temp_files(self, prefix: str, older_than_seconds: float) -> list[str]:
        folder = self._path(_folder(prefix).rstrip("/"))
        cutoff = time.time() - older_than_seconds
        removed = []
        for directory, _, names in os.walk(folder):  # links to folders are not followed
            for path in (Path(directory) / name for name in names if name.startswith(TEMP_PREFIX)):
                with contextlib.suppress(FileNotFoundError):
                    if stat.S_ISREG((info := path.lstat()).st_mode) and info.st_mtime < cutoff:
                        path.unlink()
                        removed.append(path.relative_to(self.root).as_posix())
        return removed

    def uri(self, key: str | ObjectInfo) -> str:
        return (self.root / _key_of(key)).as_uri()


class NotARegularFile(OSError):
    """An entry that is a link, FIFO, device, socket or folder where a file was expected."""


_FILE_KINDS = (
    (stat.S_ISLNK, "symbolic link"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISDIR, "directory"),
)


def _file_kind(mode: int) -> str:
    return next((kind for test, kind in _FILE_KINDS if test(mode)), "special file")


def _signature(info: os.stat_result) -> list[int]:
    """What changes whenever a file's content may have: size, modification and change times, inode."""
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def _open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading: a final symlink is not followed (O_NOFOLLOW), a FIFO
    does not block the open (O_NONBLOCK), and anything but a regular file is closed unread."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotARegularFile(f"{path} is a symbolic link") from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotARegularFile(f"{path} is a {_file_kind(mode)}")
    return os.fdopen(fd, "rb")


def _walk(directory: Path, root: Path) -> Iterator[tuple[str, str, tuple[str, str] | None]]:
    """(safe key, name under root, None) of every regular file below ``directory``, entering
    folders but not symlinks to them; anything else comes with (reason, detail) from its lstat."""
    name = directory.relative_to(root).as_posix()
    try:
        with os.scandir(directory) as found:
            children = list(found)
    except FileNotFoundError:
        return
    except OSError as error:
        yield safe_key(name), name, (UNREADABLE, f"cannot list the folder: {error.strerror}")
        return
    for child in children:
        path = f"{name}/{child.name}" if name != "." else child.name
        if path == ETAG_CACHE:
            continue
        try:
            mode = child.stat(follow_symlinks=False).st_mode
        except FileNotFoundError:
            continue
        except OSError as error:
            yield safe_key(path), path, (UNREADABLE, f"cannot stat it: {error.strerror}")
            continue
        if stat.S_ISDIR(mode):
            yield from _walk(Path(child.path), root)
        elif not stat.S_ISREG(mode):
            yield safe_key(path), path, (NOT_A_REGULAR_FILE, f"a {_file_kind(mode)}")
        elif not child.name.startswith(TEMP_PREFIX):
            yield safe_key(path), path, None


_MISSING = {"404", "NoSuchKey", "NotFound"}
_REFUSED = {"412", "PreconditionFailed", "ConditionalRequestConflict"}
_CREDENTIALS_FIX = (
    "check the access key and secret (MLOPS_OBJECT_STORE__ACCESS_KEY_ID / __SECRET_ACCESS_KEY, "
    "or the Airflow connection) and that they may use this bucket"
)
_FIXES = {
    "InvalidAccessKeyId": _CREDENTIALS_FIX,
    "SignatureDoesNotMatch": _CREDENTIALS_FIX,
    "AccessDenied": _CREDENTIALS_FIX,
    "403": _CREDENTIALS_FIX,
    "NoSuchBucket": "create the bucket (S3Store.ensure_bucket()) or fix MLOPS_OBJECT_STORE__BUCKET",
}


class S3Store(ObjectStore):
    """Objects in one bucket of an S3 endpoint, through a boto3 client (thread-safe)."""

    def __init__(self, bucket: str, client: Any) -> None:
        self.bucket = bucket
        self.client = client
        self.endpoint = client.meta.endpoint_url

    @classmethod
    def connect(cls, bucket: str, **client_options: Any) -> S3Store:
        """Build the client from keyword settings; see :func:`make_s3_client`."""
        return cls(bucket, make_s3_client(**client_options))

    @contextlib.contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        """Turn boto errors into ObjectNotFound / ObjectStoreError naming bucket, key, endpoint, fix."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"{action} {self.uri(key) if key else f's3://{self.bucket}'} at {self.endpoint}"
        try:
            yield
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING and key:
                raise ObjectNotFound(f"{self.uri(key)} does not exist (endpoint {self.endpoint})") from None
            fix = _FIXES.get(code, "see the server's log; Airflow retries the task")
            raise ObjectStoreError(f"{where} failed: {error}. Fix: {fix}.") from error
        except NoCredentialsError as error:
            fix = "set MLOPS_OBJECT_STORE__ACCESS_KEY_ID / __SECRET_ACCESS_KEY or AWS credentials"
            raise ObjectStoreError(f"{where} failed: {error}. Fix: {fix}.") from error
        except (BotoCoreError, Boto3Error) as error:
            attempts = self.client.meta.config.retries.get("total_max_attempts", "several")
            fix = "is the S3 server running and MLOPS_OBJECT_STORE__ENDPOINT_URL right?"
            raise ObjectStoreError(
                f"{where} failed after {attempts} attempts: {error}. Fix: {fix}"
            ) from error

    def put_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, content_type: str | None = None, durable: bool = True
    ) -> bool:
        from botocore.exceptions import ClientError

        extra = {"IfNoneMatch": "*"} if if_absent else {}
        if content_type:
            extra["ContentType"] = content_type
        with self._errors("PUT", key):
            try:
                self.client.put_object(Bucket=self.bucket, Key=validate_key(key), Body=data, **extra)
            except ClientError as error:
                if if_absent and str(error.response.get("Error", {}).get("Code")) in _REFUSED:
                    return False
                raise
        return True

    def put_file(self, key: str, path: str | os.PathLike[str], *, content_type: str | None = None) -> None:
        from boto3.s3.transfer import TransferConfig

        extra = {"ContentType": content_type} if content_type else None
        config = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024)
        with self._errors("upload", key):
            self.client.upload_file(str(path), self.bucket, validate_key(key), ExtraArgs=extra, Config=config)

    def remove_temp_files(self, prefix: str, older_than_seconds: float) -> list[str]:
        """A PUT leaves no partial object, but a multipart upload (:meth:`put_file`) killed midway
        leaves its parts stored, unlisted and billed until it is aborted."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        aborted = []
        with self._errors(f"list multipart uploads under {prefix!r} of"):
            paginator = self.client.get_paginator("list_multipart_uploads")
            pages = paginator.paginate(Bucket=self.bucket, Prefix=_folder(prefix))
            for upload in (upload for page in pages for upload in page.get("Uploads", [])):
                if upload["Initiated"] < cutoff:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted.append(upload["Key"])
        return aborted

    @contextlib.contextmanager
    def open(self, key: str | ObjectInfo) -> Iterator[BinaryIO]:
        with self._errors("GET", _key_of(key)):
            body = self.client.get_object(Bucket=self.bucket, Key=_stored_key(key))["Body"]
        with contextlib.closing(body):
            yield body

    def scan(
        self, prefix: str = "", deadline: float | None = None, *, remember_etags: bool = False
    ) -> Iterator[ObjectInfo | RefusedEntry]:
        """Keys with an empty, '.' or '..' segment are refused: a server or proxy may resolve
        them to another object. Zero-byte keys ending in '/' are folder markers, not objects."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=_folder(prefix)
        )
        with self._errors(f"LIST prefix {prefix!r} of"):
            for page in pages:
                for item in page.get("Contents", []):
                    stored, size = item["Key"], item["Size"]
                    key = safe_key(stored)
                    _check_deadline(deadline, key)
                    if stored.endswith("/") and size == 0:
                        continue
                    if _has_dot_segment(stored):
                        yield RefusedEntry(
                            readable(stored), UNSAFE_NAME, "it has an empty, '.' or '..' path segment"
                        )
                        continue
                    etag, modified = item["ETag"].strip('"'), item["LastModified"]
                    yield ObjectInfo(key, size, etag, modified, None if stored == key else stored)

    def exists(self, key: str) -> bool:
        try:
            with self._errors("HEAD", key):
                self.client.head_object(Bucket=self.bucket, Key=validate_key(key))
        except ObjectNotFound:
            return False
        return True

    def copy(self, src: str | ObjectInfo, dst: str) -> None:
        """Server-side copy (single request: objects up to 5 GB)."""
        source = {"Bucket": self.bucket, "Key": _stored_key(src)}
        with self._errors("COPY", _key_of(src)):
            self.client.copy_object(Bucket=self.bucket, Key=validate_key(dst), CopySource=source)

    def delete(self, key: str) -> None:
        with self._errors("DELETE", key):
            self.client.delete_object(Bucket=self.bucket, Key=validate_key(key))

    def uri(self, key: str | ObjectInfo) -> str:
        return f"s3://{self.bucket}/{_key_of(key)}"

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (idempotent, safe against a concurrent creator)."""
        from botocore.exceptions import ClientError

        with self._errors("create bucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as error:
                if str(error.response.get("Error", {}).get("Code")) not in _MISSING | {"NoSuchBucket"}:
                    raise
            region = self.client.meta.region_name
            location = (
                {"CreateBucketConfiguration": {"LocationConstraint": region}} if region != "us-east-1" else {}
            )
            try:
                self.client.create_bucket(Bucket=self.bucket, **location)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise


def make_s3_client(
    *,
    endpoint_url: str | None = None,
    region: str = "us-east-1",
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    addressing_style: str = "path",
    max_attempts: int = 6,
    connect_timeout: float = 5,
    read_timeout: float = 60,
    airflow_conn_id: str | None = None,
) -> Any:
    """A boto3 S3 client with standard-mode retries (exponential backoff) and timeouts.

    Credentials: the given pair, else the Airflow connection ``airflow_conn_id`` (its extras
    hold the endpoint), else boto3's default chain (env, ~/.aws, instance role).
    """
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=region,
        s3={"addressing_style": addressing_style},
        retries={"mode": "standard", "total_max_attempts": max_attempts},  # first try included
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    if airflow_conn_id:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=airflow_conn_id, region_name=region, config=config).get_conn()
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=config,
    )


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def s3_client_options(cfg: ObjectStoreSettings) -> dict[str, Any]:
    """Keyword arguments of :func:`make_s3_client` taken from the object-store settings."""
    return {
        "endpoint_url": cfg.endpoint_url,
        "region": cfg.region,
        "access_key_id": _secret(cfg.access_key_id),
        "secret_access_key": _secret(cfg.secret_access_key),
        "addressing_style": cfg.addressing_style,
        "max_attempts": cfg.max_attempts,
        "airflow_conn_id": cfg.airflow_conn_id,
    }


def open_object_store(settings: Settings) -> ObjectStore:
    """The object store the settings ask for: a local directory or an S3 bucket."""
    cfg = settings.object_store
    if cfg.backend == "local":
        return LocalDirStore(settings.local_root)
    return S3Store.connect(cfg.bucket, **s3_client_options(cfg))


def open_target(target: str | None, settings: Settings) -> tuple[ObjectStore, str]:
    """Where a CLI command writes: ``(store, key prefix)`` for a directory, ``s3://bucket/prefix``
    (reached with the configured endpoint and credentials), or by default the configured store's
    landing prefix. The command is about to write, so an S3 bucket is created if missing."""
    if target and not target.startswith("s3://"):
        return LocalDirStore(target), ""
    if target:
        bucket, _, prefix = target.removeprefix("s3://").partition("/")
        store: ObjectStore = S3Store.connect(bucket, **s3_client_options(settings.object_store))
    else:
        store, prefix = open_object_store(settings), settings.prefixes.landing
    prefix = validate_key(prefix.strip("/")) if prefix.strip("/") else ""
    if isinstance(store, S3Store):
        store.ensure_bucket()
    return store, prefix
