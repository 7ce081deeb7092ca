"""The platform's metadata store: documents, landing objects, runs, watermarks, the audit log,
preprocess results, extractions, anomaly findings and per-run metrics.

One implementation on SQLAlchemy 2 serves both backends: Postgres in production and a SQLite
file for the embedded default. Alembic (``mlops/io/migrations``) is the only thing that creates
or changes tables; :meth:`MetadataStore.migrate` runs ``alembic upgrade head`` in-process, so no
``alembic.ini`` is needed on disk. The ORM classes below mirror the migrations (0001 foundation,
0002 results, 0003 document attempts, 0004 run lease and run outcomes, 0005 field statistics,
0006 clarity of scanned pages only, 0007 the perceptual-hash band index) and a test checks that
the two agree.

Contract: every write method is one transaction, and every insert that a retried task may repeat
is an ``INSERT ... ON CONFLICT`` against a unique constraint, so duplicates are impossible by
construction rather than avoided by luck. Reads return plain dicts (column name -> value,
timestamps timezone-aware UTC) or the pydantic models of :mod:`mlops.models`.

Results (0002): ``extractions`` keeps one row per (sha256, run_id) with the whole flat
:meth:`mlops.models.Extraction.row` in a JSON column (JSONB on Postgres) next to a few typed
columns; values are made JSON-safe first (numpy/pandas scalars become Python values, NaN and
infinities become null). ``findings`` holds a run's anomalies and is replaced as a whole when a
run is re-checked; ``run_metrics`` is one float per (run_id, name).

Runs (0004): one run at a time works on a store. It holds the ``run_lease`` row, renewed by a
heartbeat thread (:class:`RunLease`) while it lives; the lease belongs to the run id, so every
task process of one Airflow run passes and renews it. A run that finds the lease of another run
live waits or stops (:class:`mlops.errors.RunBusy`); one that finds it expired takes it and marks
every run still ``running`` as ``abandoned`` with the reason, so its claims can be taken over.
``pipeline_runs.outcome`` says what became of the work (:class:`mlops.models.RunOutcome`),
``verdict`` what the gate said of it; ``status`` keeps the old combined value for older readers.

Transient faults (a dropped connection, a server restarting, SQLite busy) are retried with
exponential backoff within the same budget as the object store (``retry.max_attempts``); integrity
errors and bad SQL are not retried.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, ParamSpec, Self, TextIO, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mlops.errors import LeaseLost, MlopsError, RunBusy, RunSuperseded
from mlops.io.phash_index import band_keys, can_probe, hash_value, nearest, probe_keys
from mlops.models import (
    DocumentFormat,
    DocumentRecord,
    DocumentStatus,
    Finding,
    PreprocessRecord,
    QuarantineReason,
    RunOutcome,
    RunVerdict,
)

if TYPE_CHECKING:
    import pandas as pd

    from mlops.config import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
IN_CHUNK = 400  # rows or tuples per statement: far below SQLite's bound-parameter limit
LOOKUP_BATCH = 20  # documents per near-duplicate lookup: ~5,000 band keys, an index scan on any planner
_MIGRATION_LOCK_KEY = 0x6D6C6F7073  # pg_advisory_xact_lock key: one migrator at a time
_LEASE_LOCK_KEY = 0x6D6C6F7074  # pg_advisory_xact_lock key: one lease change at a time
LEASE_NAME = "pipeline"  # the one lease of a store: one live run per landing area and database
FIRST_BACKOFF_SECONDS = 0.5
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10
STOPPED_OUTCOMES = (RunOutcome.INTERRUPTED.value, RunOutcome.ABANDONED.value)

log = logging.getLogger(__name__)
# Every CLI call and task migrates (a no-op once at head): Alembic says only when a revision is applied.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
logging.getLogger("alembic.runtime.migration").addFilter(
    lambda record: record.levelno >= logging.WARNING or record.getMessage().startswith("Running ")
)
_P = ParamSpec("_P")
_R = TypeVar("_R")


class MetadataError(MlopsError):
    """A metadata-store call names something that does not exist or is not allowed."""


class RunStatus(StrEnum):
    """The old combined state of a run, kept for older readers: ``failed`` is a failed gate or a
    run that did not finish; :class:`RunOutcome` and :class:`RunVerdict` tell the two apart."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    PARTIAL = "partial"


VERDICT_OF_STATUS = {RunStatus.SUCCESS: RunVerdict.PASSED, RunStatus.PARTIAL: RunVerdict.WARNING,
                     RunStatus.FAILED: RunVerdict.FAILED}  # fmt: skip


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in and out on both backends (SQLite stores naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


class Document(Base):
    __tablename__ = "documents"

    sha256: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    source_key: Mapped[str] = mapped_column(sa.String(1024))
    original_filename: Mapped[str] = mapped_column(sa.String(1024))
    format: Mapped[str | None] = mapped_column(sa.String(16))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    pages: Mapped[int | None] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(32), index=True)
    quarantine_reason: Mapped[str | None] = mapped_column(sa.String(64))
    quarantine_detail: Mapped[str] = mapped_column(sa.Text, default="")
    raw_key: Mapped[str] = mapped_column(sa.String(1024))
    first_seen_run: Mapped[str] = mapped_column(sa.String(255))
    last_seen_run: Mapped[str] = mapped_column(sa.String(255), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class LandingObject(Base):
    __tablename__ = "landing_objects"
    __table_args__ = (sa.UniqueConstraint("source_key", "etag"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    source_key: Mapped[str] = mapped_column(sa.String(1024))
    etag: Mapped[str] = mapped_column(sa.String(255))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("documents.sha256"), index=True)
    run_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    acquired_at: Mapped[datetime]
    is_duplicate: Mapped[bool] = mapped_column(sa.Boolean)


class PipelineRun(Base):
    __tablename__ = "pipeline_runs"

    run_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(sa.String(16))
    counts: Mapped[dict[str, Any]]
    settings_fingerprint: Mapped[str] = mapped_column(sa.String(64))
    pipeline_version: Mapped[str] = mapped_column(sa.String(64))
    outcome: Mapped[str] = mapped_column(sa.String(16), index=True, server_default=RunOutcome.RUNNING.value)
    outcome_reason: Mapped[str | None] = mapped_column(sa.Text)
    verdict: Mapped[str | None] = mapped_column(sa.String(16))


class RunLeaseRow(Base):
    """The run allowed to work on the store until ``expires_at`` (renewed by its heartbeat)."""

    __tablename__ = "run_lease"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.String(255))
    holder: Mapped[str] = mapped_column(sa.String(255))
    acquired_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class AuditEvent(Base):
    """Append-only: the store has no update or delete for it; Postgres enforces that with a trigger."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    stage: Mapped[str] = mapped_column(sa.String(64))
    sha256: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    event: Mapped[str] = mapped_column(sa.String(64))
    details: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class ProcessedDocument(Base):
    """The watermark: a document processed by a pipeline version is skipped by later runs."""

    __tablename__ = "processed_documents"
    __table_args__ = (sa.UniqueConstraint("sha256", "pipeline_version"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    pipeline_version: Mapped[str] = mapped_column(sa.String(64))
    run_id: Mapped[str] = mapped_column(sa.String(255))
    processed_at: Mapped[datetime]


class PreprocessResult(Base):
    __tablename__ = "preprocess_results"
    __table_args__ = (sa.UniqueConstraint("sha256", "run_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    run_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    pages: Mapped[int] = mapped_column(sa.Integer)
    format: Mapped[str] = mapped_column(sa.String(16))
    has_text_layer: Mapped[bool] = mapped_column(sa.Boolean)
    clarity: Mapped[float | None] = mapped_column(sa.Float)
    min_dpi: Mapped[float | None] = mapped_column(sa.Float)
    phash: Mapped[str] = mapped_column(sa.String(64))
    fingerprint: Mapped[str] = mapped_column(sa.String(128))
    near_duplicate_of: Mapped[str | None] = mapped_column(sa.String(64))
    near_duplicate_distance: Mapped[int | None] = mapped_column(sa.Integer)


class PhashBand(Base):
    """One band of a preprocess result's perceptual hash: the index near-duplicate search probes
    (:mod:`mlops.io.phash_index`), written and deleted with its result. No foreign key on purpose:
    SQLite alters a column by rebuilding the table (Alembic batch mode), and dropping the old
    table would cascade into this one. A stray row costs a candidate, never a wrong match: every
    candidate is checked against its result's own hash."""

    __tablename__ = "phash_bands"
    __table_args__ = ({"sqlite_with_rowid": False},)

    band_key: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    result_id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=False, index=True)


class DocumentAttempt(Base):
    """A document a stage handed to a worker and has not finished with: the row outlives a run
    that died meanwhile, so a document that keeps killing runs can be told apart (``poison``)."""

    __tablename__ = "document_attempts"

    sha256: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("documents.sha256"), primary_key=True)
    stage: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    attempts: Mapped[int] = mapped_column(sa.Integer)
    last_run_id: Mapped[str] = mapped_column(sa.String(255))
    updated_at: Mapped[datetime]


class ExtractionResult(Base):
    """One document's extraction in one run; ``data`` is the whole flat ``Extraction.row()``."""

    __tablename__ = "extractions"
    __table_args__ = (sa.UniqueConstraint("sha256", "run_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    extractor: Mapped[str] = mapped_column(sa.String(64))
    doc_type: Mapped[str | None] = mapped_column(sa.String(64))
    doc_type_confidence: Mapped[float] = mapped_column(sa.Float)
    text_source: Mapped[str] = mapped_column(sa.String(16))
    pages: Mapped[int] = mapped_column(sa.Integer)
    text_layer_pages: Mapped[int] = mapped_column(sa.Integer)
    ocr_pages: Mapped[int] = mapped_column(sa.Integer)
    ocr_confidence: Mapped[float | None] = mapped_column(sa.Float)
    validation_pass: Mapped[bool | None] = mapped_column(sa.Boolean)
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class FindingRow(Base):
    """One anomaly finding of a run (see :class:`mlops.models.Finding`)."""

    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.String(255), index=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    field: Mapped[str | None] = mapped_column(sa.String(64))
    value: Mapped[str | None] = mapped_column(sa.Text)
    detector: Mapped[str] = mapped_column(sa.String(64))
    severity: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime]


class RunMetric(Base):
    """One named number of a run (NULL stands for NaN)."""

    __tablename__ = "run_metrics"
    __table_args__ = (sa.UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.String(255))
    name: Mapped[str] = mapped_column(sa.String(255))
    value: Mapped[float | None] = mapped_column(sa.Float)


class FieldStatisticsRow(Base):
    """One field's statistics in one run (:mod:`mlops.monitoring.statistics`); ``stats`` holds the
    kind-specific part (quantiles, histogram, frequencies, lengths, confidence spread)."""

    __tablename__ = "field_statistics"
    __table_args__ = (sa.UniqueConstraint("run_id", "field"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.String(255))
    field: Mapped[str] = mapped_column(sa.String(255))
    kind: Mapped[str | None] = mapped_column(sa.String(16))
    count: Mapped[int] = mapped_column(sa.Integer)
    missing: Mapped[int] = mapped_column(sa.Integer)
    missing_rate: Mapped[float] = mapped_column(sa.Float)
    mean_confidence: Mapped[float | None] = mapped_column(sa.Float)
    stats: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


EXTRACTION_COLUMNS: tuple[str, ...] = (
    "sha256",
    "extractor",
    "doc_type",
    "doc_type_confidence",
    "text_source",
    "pages",
    "text_layer_pages",
    "ocr_pages",
    "ocr_confidence",
)  # typed columns of ``extractions`` copied from the flat row (everything is also in ``data``)


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _row_dict(row: sa.Row[Any]) -> dict[str, Any]:
    return dict(row._mapping)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _plain(value: Any) -> Any:
    """A JSON-safe Python scalar: numpy/pandas scalars unwrapped, NaN/NA/NaT/infinity -> None,
    dates as ISO strings. Containers are converted element by element."""
    if value is None or type(value) in (bool, int, str):
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):  # StrEnum and other subclasses
        return str(value)
    if isinstance(value, float):  # also numpy.float64
        return float(value) if math.isfinite(value) else None
    if isinstance(value, int):  # IntEnum and other subclasses
        return int(value)
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas.NA, pandas.NaT (a datetime subclass)
        return None
    if isinstance(value, datetime | date):  # also pandas.Timestamp
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalar (bool_, int64, ...)
        return _plain(value.item())
    if hasattr(value, "tolist"):  # numpy array
        return _plain(value.tolist())
    try:
        number = float(value)  # Decimal, Fraction, ...
    except (TypeError, ValueError):
        raise TypeError(f"{type(value).__name__} {value!r} is not JSON serialisable") from None
    return number if math.isfinite(number) else None


def is_transient(error: BaseException, dialect_name: str) -> bool:
    """A fault worth retrying: the connection dropped or could not be made, the server is going
    away or restarting, a lock or the pool timed out (SQLite busy). Not integrity errors or bad SQL."""
    if isinstance(error, sa.exc.TimeoutError):  # no pooled connection free in time
        return True
    if not isinstance(error, sa.exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if not isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError):
        return False
    if dialect_name == "sqlite":  # also "no such table", "disk I/O error": not transient
        message = str(error.orig).lower()
        return "locked" in message or "busy" in message
    return True


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _retried(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a store call again after a transient fault, with exponential backoff and jitter, up to
    the store's ``max_attempts`` (the first try included). Nested calls retry only at the top.

    Every write is one transaction, so a retry repeats a whole call; the upserts make that safe."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        store: MetadataStore = args[0]  # type: ignore[assignment]
        if getattr(_RETRY_STATE, "active", False):
            return method(*args, **kwargs)
        store.flush_writes()  # this thread's deferred writes come first, in order
        attempt = 1
        while True:
            _RETRY_STATE.active = True
            try:
                return method(*args, **kwargs)
            except (sa.exc.DBAPIError, sa.exc.TimeoutError) as error:
                if attempt >= store.max_attempts or not is_transient(error, store.engine.dialect.name):
                    raise
                delay = min(store.max_backoff_seconds, FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1))
                delay = delay / 2 + random.uniform(0, delay / 2)
                log.warning("metadata store: %s failed (attempt %d of %d), retrying in %.1f s: %s",
                            method.__name__, attempt, store.max_attempts, delay, _first_line(error))  # fmt: skip
            finally:
                _RETRY_STATE.active = False
            time.sleep(delay)
            attempt += 1

    return wrapper


_RETRY_STATE = threading.local()
DEFERRED_WRITES_MAX = 200


def _deferrable(method: Callable[_P, None]) -> Callable[_P, None]:
    """A write that, inside :meth:`MetadataStore.deferred_writes`, waits in the calling thread's
    queue and is committed with the others in one transaction (a document's bookkeeping cost a
    transaction per call, a dozen per document)."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> None:
        store: MetadataStore = args[0]  # type: ignore[assignment]
        queue = getattr(store._thread_state, "queue", None)
        if queue is None:
            return method(*args, **kwargs)
        queue.append(functools.partial(method, *args, **kwargs))
        if len(queue) >= DEFERRED_WRITES_MAX:
            store.flush_writes()
        return None

    return wrapper


class MetadataStore:
    """Metadata on Postgres or SQLite, chosen by the URL alone.

    ``max_attempts`` and ``max_backoff_seconds``: the retry budget for transient faults (settings
    ``retry.*``, shared with the object store).
    """

    def __init__(self, url: str | URL, *, max_attempts: int = 6, max_backoff_seconds: float = 10.0) -> None:
        url = sa.make_url(url)
        self.url = url
        self.max_attempts = max(1, int(max_attempts))
        self.max_backoff_seconds = float(max_backoff_seconds)
        if url.get_backend_name() == "sqlite":
            self.engine = _sqlite_engine(url)
        else:
            connect_args = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS} if "connect_timeout" not in url.query else {}
            self.engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._dialect_insert = postgresql.insert if self.is_postgres else sqlite.insert
        self._thread_state = threading.local()  # deferred writes: queue, open transaction

    @classmethod
    def from_settings(cls, settings: Settings) -> MetadataStore:
        """The store for ``settings.metadata_url``, or for an Airflow connection if one is named."""
        conn_id = settings.metadata.airflow_conn_id
        url = _airflow_connection_url(conn_id) if conn_id else settings.metadata_url
        return cls(url, max_attempts=settings.retry.max_attempts, max_backoff_seconds=settings.retry.max_backoff_seconds)

    def __repr__(self) -> str:
        return f"MetadataStore({self.url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.dispose()

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def deferred_writes(self) -> Iterator[None]:
        """Within the block, this thread's bookkeeping writes (document status, audit events,
        finished attempts) are queued and committed together: before any other call on the store
        reads or writes, every :data:`DEFERRED_WRITES_MAX` writes, and when the block ends. A
        process killed inside loses at most the queue, which a rerun of the stage writes again;
        a block left by an exception commits the queue once, without retries."""
        state = self._thread_state
        if getattr(state, "queue", None) is not None:
            yield
            return
        state.queue = []
        try:
            yield
            self.flush_writes()
        except BaseException:
            calls, state.queue = state.queue, None
            with suppress(Exception):
                self._commit.__wrapped__(self, calls)  # type: ignore[attr-defined]
            raise
        finally:
            state.queue = None

    def flush_writes(self) -> None:
        """Commit this thread's deferred writes now (nothing to do outside deferred_writes)."""
        queue = getattr(self._thread_state, "queue", None)
        if queue:
            calls = list(queue)
            queue.clear()
            self._commit(calls)

    @_retried
    def _commit(self, calls: list[Callable[[], None]]) -> None:
        with self._write() as conn:
            self._thread_state.connection = conn
            try:
                for call in calls:
                    call()
            finally:
                self._thread_state.connection = None

    # -- schema -----------------------------------------------------------------------------

    @_retried
    def migrate(self) -> None:
        """Bring the schema to the newest revision; a no-op when it is already there.

        Concurrent callers are serialised (advisory lock on Postgres, write lock on SQLite).
        """
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self._write() as conn:
            if self.is_postgres:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    @_retried
    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None before the first migrate)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # -- runs -------------------------------------------------------------------------------

    @_retried
    def start_run(self, run_id: str, settings_fingerprint: str, pipeline_version: str) -> bool:
        """Record a run as running. Returns True if the run is new.

        A retried task restarting the same run keeps the original started_at; the run goes
        back to ``running`` (outcome too) with no finished_at, reason or verdict.
        """
        now = utcnow()
        row = {
            "run_id": run_id,
            "started_at": now,
            "status": RunStatus.RUNNING.value,
            "outcome": RunOutcome.RUNNING.value,
            "counts": {},
            "settings_fingerprint": settings_fingerprint,
            "pipeline_version": pipeline_version,
        }
        with self._write() as conn:
            if self._insert_ignore(conn, PipelineRun, [row]):
                return True
            conn.execute(
                sa.update(PipelineRun)
                .where(PipelineRun.run_id == run_id)
                .values(status=RunStatus.RUNNING.value, outcome=RunOutcome.RUNNING.value, finished_at=None,
                        outcome_reason=None, verdict=None)
            )
            return False

    @_retried
    def finish_run(
        self,
        run_id: str,
        status: RunStatus | str,
        counts: dict[str, Any],
        *,
        outcome: RunOutcome | str = RunOutcome.COMPLETED,
        verdict: RunVerdict | str | None = None,
        reason: str | None = None,
    ) -> None:
        """Close a run with its status (success, failed or partial) and counts (a JSON object),
        and release its lease.

        ``outcome``: completed (the default: the work is done and ``verdict`` is the gate's, by
        default the one ``status`` implies) or error (the run stopped on a failure: no verdict).
        An error does not overwrite ``abandoned`` or ``interrupted``: that came first and says why.
        """
        status, outcome = RunStatus(status), RunOutcome(outcome)
        if status is RunStatus.RUNNING or outcome is RunOutcome.RUNNING:
            raise MetadataError(f"run {run_id!r}: finish_run needs success, failed or partial, not running")
        if verdict is None and outcome is RunOutcome.COMPLETED:
            verdict = VERDICT_OF_STATUS[status]
        values = {
            "status": status.value,
            "counts": dict(counts),
            "finished_at": utcnow(),
            "outcome": outcome.value,
            "outcome_reason": reason,
            "verdict": None if verdict is None else RunVerdict(verdict).value,
        }
        table = PipelineRun.__table__
        if outcome is RunOutcome.ERROR:
            stopped = table.c.outcome.in_(STOPPED_OUTCOMES)
            values |= {"outcome": sa.case((stopped, table.c.outcome), else_=values["outcome"]),
                       "outcome_reason": sa.case((stopped, table.c.outcome_reason), else_=reason)}  # fmt: skip
        with self._write() as conn:
            result = conn.execute(sa.update(table).where(table.c.run_id == run_id).values(**values))
            if result.rowcount != 1:
                raise MetadataError(f"run {run_id!r} was never started: call start_run first")
            self._release(conn, run_id)

    @_retried
    def stop_run(self, run_id: str, outcome: RunOutcome | str, reason: str, *, stage: str = "run") -> None:
        """Close a run that stopped before its end (``interrupted``, ``error``) with the reason, an
        audit event, and its lease released. Its documents' attempts in workers are not counted
        against them: the run stopped for a reason of its own."""
        outcome = RunOutcome(outcome)
        if outcome in (RunOutcome.RUNNING, RunOutcome.COMPLETED):
            raise MetadataError(f"run {run_id!r}: stop_run is for runs that did not finish, not {outcome}")
        now = utcnow()
        with self._write() as conn:
            conn.execute(
                sa.update(PipelineRun)
                .where(PipelineRun.run_id == run_id)
                .values(status=RunStatus.FAILED.value, outcome=outcome.value, outcome_reason=reason,
                        verdict=None, finished_at=now)
            )
            self._forget_attempts_of(conn, run_id)
            self._release(conn, run_id)
            self._event(conn, run_id, stage, outcome.value, {"reason": reason})

    @_retried
    def get_run(self, run_id: str) -> dict[str, Any] | None:
        return self._one(sa.select(PipelineRun.__table__).where(PipelineRun.run_id == run_id))

    @_retried
    def runs(self, outcome: RunOutcome | str | None = None) -> list[dict[str, Any]]:
        """Every run (optionally with this outcome), oldest first."""
        table = PipelineRun.__table__
        query = sa.select(table).order_by(table.c.started_at, table.c.run_id)
        if outcome is not None:
            query = query.where(table.c.outcome == RunOutcome(outcome).value)
        return self._all(query)

    # -- the run lease ----------------------------------------------------------------------

    @_retried
    def acquire_lease(
        self, run_id: str, holder: str, ttl_seconds: float, *, exclusive: bool = False, continuing: bool = False
    ) -> list[str]:
        """Take the store's lease for ``run_id`` until ``ttl_seconds`` from now, or renew it.

        Every process of the run holding the lease passes (Airflow runs each task in a process
        of its own); with ``exclusive`` only ``holder`` itself does (one process is the whole run,
        as with ``python -m mlops run``). Raises :class:`RunBusy` naming the run whose lease is
        live. A free or expired lease is taken, and every other run still ``running`` is marked
        ``abandoned`` with its reason (their claims go to this run); returns their ids.
        ``continuing``: the run resumes past its first stage, which a run that was interrupted
        may not do, nor one abandoned once a later run has started (raises :class:`RunSuperseded`).
        """
        now = utcnow()
        table = RunLeaseRow.__table__
        with self._write() as conn:
            if self.is_postgres:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LEASE_LOCK_KEY)))
            lease = conn.execute(sa.select(table).where(table.c.name == LEASE_NAME)).first()
            live = lease is not None and lease.expires_at > now
            if live and (lease.run_id != run_id or (exclusive and lease.holder != holder)):
                raise RunBusy(_busy_message(lease, run_id, now), run_id=lease.run_id)
            if continuing:
                self._refuse_superseded(conn, run_id)
            abandoned: list[str] = []
            if lease is None or lease.run_id != run_id:
                abandoned = self._abandon_others(conn, run_id, lease, now)
            row = {"run_id": run_id, "holder": holder, "heartbeat_at": now, "expires_at": now + timedelta(seconds=ttl_seconds)}
            if lease is None:
                conn.execute(sa.insert(table).values(name=LEASE_NAME, acquired_at=now, **row))
            else:
                acquired = lease.acquired_at if lease.run_id == run_id else now
                conn.execute(sa.update(table).where(table.c.name == LEASE_NAME).values(acquired_at=acquired, **row))
            return abandoned

    @_retried
    def renew_lease(self, run_id: str, holder: str, ttl_seconds: float) -> bool:
        """The heartbeat: extend the lease if ``run_id`` still holds it. False: the run lost it
        (another run holds it, or took over and marked this one abandoned); a lease the run gave
        up itself by closing (:meth:`finish_run`, :meth:`stop_run`) is not lost."""
        now = utcnow()
        table = RunLeaseRow.__table__
        with self._write() as conn:
            result = conn.execute(
                sa.update(table)
                .where(table.c.name == LEASE_NAME, table.c.run_id == run_id)
                .values(holder=holder, heartbeat_at=now, expires_at=now + timedelta(seconds=ttl_seconds))
            )
            if result.rowcount == 1:
                return True
            held_by_another = conn.execute(sa.select(table.c.run_id).where(table.c.name == LEASE_NAME)).first()
            runs = PipelineRun.__table__
            outcome = conn.execute(sa.select(runs.c.outcome).where(runs.c.run_id == run_id)).scalar()
            return held_by_another is None and outcome != RunOutcome.ABANDONED.value

    @_retried
    def release_lease(self, run_id: str) -> bool:
        """Give the lease up if ``run_id`` holds it; True if it did."""
        with self._write() as conn:
            return self._release(conn, run_id)

    @_retried
    def lease(self) -> dict[str, Any] | None:
        """The lease row (run_id, holder, acquired_at, heartbeat_at, expires_at), live or not."""
        return self._one(sa.select(RunLeaseRow.__table__).where(RunLeaseRow.name == LEASE_NAME))

    def _release(self, conn: Connection, run_id: str) -> bool:
        table = RunLeaseRow.__table__
        result = conn.execute(sa.delete(table).where(table.c.name == LEASE_NAME, table.c.run_id == run_id))
        return result.rowcount == 1

    @_retried
    def superseded_by(self, run_id: str) -> str | None:
        """The latest run started after ``run_id`` stopped (interrupted or abandoned): that run
        took over its documents, so ``run_id`` may not go on or publish. None if it may."""
        with self.engine.connect() as conn:
            return self._superseded_by(conn, run_id)[1]

    def _superseded_by(self, conn: Connection, run_id: str) -> tuple[Any, str | None]:
        runs = PipelineRun.__table__
        own = conn.execute(sa.select(runs.c.started_at, runs.c.outcome, runs.c.outcome_reason)
                           .where(runs.c.run_id == run_id)).first()  # fmt: skip
        if own is None or own.outcome not in STOPPED_OUTCOMES:
            return own, None
        later = conn.execute(
            sa.select(runs.c.run_id).where(runs.c.started_at > own.started_at, runs.c.run_id != run_id)
            .order_by(runs.c.started_at.desc()).limit(1)
        ).scalar()
        return own, later

    def _refuse_superseded(self, conn: Connection, run_id: str) -> None:
        own, later = self._superseded_by(conn, run_id)
        if later is None and own is not None and own.outcome == RunOutcome.INTERRUPTED.value:
            raise RunSuperseded(  # stopped on purpose, e.g. one of its mapped tasks marked failed in the UI
                f"run {run_id!r} was interrupted ({own.outcome_reason}): it cannot go on, the next run takes "
                f"over its unfinished documents. Start a new run instead.",
                run_id="",
            )
        if later is not None:
            raise RunSuperseded(
                f"run {run_id!r} was {own.outcome} ({own.outcome_reason}) and run {later!r} has started since, "
                f"taking over its unfinished documents: it cannot go on. Start a new run instead.",
                run_id=later,
            )

    def _abandon_others(self, conn: Connection, run_id: str, lease: Any, now: datetime) -> list[str]:
        """Every other run still ``running``: its process is gone (it holds no live lease)."""
        runs = PipelineRun.__table__
        stale = list(conn.scalars(sa.select(runs.c.run_id).where(
            runs.c.outcome == RunOutcome.RUNNING.value, runs.c.run_id != run_id).order_by(runs.c.started_at)))  # fmt: skip
        for stale_id in stale:
            if lease is not None and lease.run_id == stale_id:
                reason = (f"its lease expired at {_clock(lease.expires_at)} (last heartbeat {_clock(lease.heartbeat_at)} "
                          f"from {lease.holder}); run {run_id} took over its unfinished documents")  # fmt: skip
            else:
                reason = f"still running with no live lease at {_clock(now)}; run {run_id} took over its unfinished documents"
            conn.execute(
                sa.update(runs).where(runs.c.run_id == stale_id, runs.c.outcome == RunOutcome.RUNNING.value)
                .values(status=RunStatus.FAILED.value, outcome=RunOutcome.ABANDONED.value, outcome_reason=reason,
                        verdict=None, finished_at=now)
            )
            self._event(conn, stale_id, "run", RunOutcome.ABANDONED.value, {"reason": reason, "taken_over_by": run_id})
            log.warning("run %s marked abandoned: %s", stale_id, reason)
        if stale:
            self._event(conn, run_id, "run", "took_over", {"abandoned_runs": stale})
        return stale

    def _event(self, conn: Connection, run_id: str, stage: str, event: str, details: dict[str, Any]) -> None:
        row = {"run_id": run_id, "stage": stage, "sha256": None, "event": event,
               "details": json.loads(json.dumps(details, default=_json_default)), "created_at": utcnow()}  # fmt: skip
        conn.execute(sa.insert(AuditEvent), [row])

    # -- landing objects --------------------------------------------------------------------

    @_retried
    def landing_claims(
        self, source_keys_with_etags: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Which (source_key, etag) pairs were taken already: run_id, sha256 and is_duplicate of each."""
        pairs = list(dict.fromkeys(source_keys_with_etags))
        taken: dict[tuple[str, str], dict[str, Any]] = {}
        table = LandingObject.__table__
        with self.engine.connect() as conn:
            for chunk in _chunks(pairs):
                query = sa.select(
                    table.c.source_key, table.c.etag, table.c.run_id, table.c.sha256, table.c.is_duplicate
                ).where(sa.tuple_(table.c.source_key, table.c.etag).in_(chunk))
                for row in conn.execute(query):
                    taken[(row.source_key, row.etag)] = _row_dict(row)
        return taken

    @_retried
    def landing_objects(self, run_id: str) -> list[dict[str, Any]]:
        """The landing objects a run holds, in key order."""
        table = LandingObject.__table__
        return self._all(sa.select(table).where(table.c.run_id == run_id).order_by(table.c.source_key))

    @_retried
    def reassign_landing_object(self, source_key: str, etag: str, run_id: str) -> None:
        """Hand a landing object an unfinished earlier run took over to ``run_id``."""
        table = LandingObject.__table__
        with self._write() as conn:
            conn.execute(
                sa.update(table)
                .where(table.c.source_key == source_key, table.c.etag == etag)
                .values(run_id=run_id)
            )

    @_retried
    def claim_landing_object(
        self, run_id: str, source_key: str, etag: str, size_bytes: int, sha256: str, is_duplicate: bool
    ) -> bool:
        """Record that ``run_id`` took this landing object. True only if this call inserted it.

        The document (``sha256``) must be registered first.
        """
        row = {
            "source_key": source_key,
            "etag": etag,
            "size_bytes": size_bytes,
            "sha256": sha256,
            "run_id": run_id,
            "acquired_at": utcnow(),
            "is_duplicate": is_duplicate,
        }
        with self._write() as conn:
            return self._insert_ignore(conn, LandingObject, [row]) == 1

    # -- documents --------------------------------------------------------------------------

    @_retried
    def register_document(self, doc: DocumentRecord, run_id: str) -> bool:
        """Insert a newly acquired document (status ``acquired``). True if it is new.

        For a document already known only ``last_seen_run`` (and ``updated_at``) change.
        """
        now = utcnow()
        row = {
            "sha256": doc.sha256,
            "source_key": doc.source_key,
            "original_filename": doc.original_filename,
            "format": doc.format.value if doc.format else None,
            "size_bytes": doc.size_bytes,
            "pages": doc.pages,
            "status": DocumentStatus.ACQUIRED.value,
            "quarantine_reason": None,
            "quarantine_detail": "",
            "raw_key": doc.raw_key,
            "first_seen_run": run_id,
            "last_seen_run": run_id,
            "created_at": now,
            "updated_at": now,
        }
        with self._write() as conn:
            if self._insert_ignore(conn, Document, [row]):
                return True
            conn.execute(
                sa.update(Document)
                .where(Document.sha256 == doc.sha256)
                .values(last_seen_run=run_id, updated_at=now)
            )
            return False

    @_retried
    def get_document(self, sha256: str) -> dict[str, Any] | None:
        return self._one(sa.select(Document.__table__).where(Document.sha256 == sha256))

    @_retried
    def document_statuses(self, shas: Iterable[str]) -> dict[str, str]:
        """The status of each of these documents that is registered."""
        table = Document.__table__
        with self.engine.connect() as conn:
            return {sha: status for chunk in _chunks(list(dict.fromkeys(shas)))
                    for sha, status in conn.execute(sa.select(table.c.sha256, table.c.status)
                                                    .where(table.c.sha256.in_(chunk)))}  # fmt: skip

    @_retried
    def documents(
        self, run_id: str | None = None, status: DocumentStatus | str | None = None
    ) -> list[dict[str, Any]]:
        """Documents, optionally those last seen by ``run_id`` and/or with ``status``; by sha256."""
        query = sa.select(Document.__table__).order_by(Document.sha256)
        if run_id is not None:
            query = query.where(Document.last_seen_run == run_id)
        if status is not None:
            query = query.where(Document.status == DocumentStatus(status).value)
        return self._all(query)

    @_deferrable
    @_retried
    def update_document(
        self,
        sha256: str,
        *,
        status: DocumentStatus | str | None = None,
        format: DocumentFormat | str | None = None,
        pages: int | None = None,
        quarantine_reason: QuarantineReason | str | None = None,
        quarantine_detail: str | None = None,
        raw_key: str | None = None,
    ) -> None:
        """Set the given fields (None means leave unchanged). Raises MetadataError if unknown."""
        values: dict[str, Any] = {
            "status": DocumentStatus(status).value if status is not None else None,
            "format": DocumentFormat(format).value if format is not None else None,
            "pages": pages,
            "quarantine_reason": QuarantineReason(quarantine_reason).value if quarantine_reason else None,
            "quarantine_detail": quarantine_detail,
            "raw_key": raw_key,
        }
        values = {name: value for name, value in values.items() if value is not None}
        with self._write() as conn:
            result = conn.execute(
                sa.update(Document).where(Document.sha256 == sha256).values(**values, updated_at=utcnow())
            )
            if result.rowcount != 1:
                raise MetadataError(f"document {sha256} is not registered: register_document first")

    @_deferrable
    @_retried
    def release_document(self, sha256: str, raw_key: str) -> None:
        """A quarantined document back in raw storage: its quarantine reason and detail cleared."""
        with self._write() as conn:
            conn.execute(
                sa.update(Document).where(Document.sha256 == sha256)
                .values(raw_key=raw_key, quarantine_reason=None, quarantine_detail="", updated_at=utcnow())
            )  # fmt: skip

    # -- audit log --------------------------------------------------------------------------

    @_deferrable
    @_retried
    def record_event(
        self,
        run_id: str,
        stage: str,
        event: str,
        sha256: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append one audit event. There is deliberately no way to change or delete one."""
        row = {
            "run_id": run_id,
            "stage": stage,
            "sha256": sha256,
            "event": event,
            "details": json.loads(json.dumps(details or {}, default=_json_default)),
            "created_at": utcnow(),
        }
        with self._write() as conn:
            conn.execute(sa.insert(AuditEvent), [row])

    @_retried
    def events(self, run_id: str | None = None, event: str | None = None) -> list[dict[str, Any]]:
        """Audit events in the order they were written, optionally of one run and/or one kind."""
        query = self._events_query(run_id)
        return self._all(query if event is None else query.where(AuditEvent.event == event))

    def export_audit_jsonl(self, out: TextIO, run_id: str | None = None) -> int:
        """Write audit events as JSON Lines (ISO-8601 timestamps, ordered by id); return the count."""
        count = 0
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=1000).execute(self._events_query(run_id))
            for row in result:
                out.write(json.dumps(_row_dict(row), default=_json_default, sort_keys=True) + "\n")
                count += 1
        return count

    @staticmethod
    def _events_query(run_id: str | None) -> sa.Select[Any]:
        query = sa.select(AuditEvent.__table__).order_by(AuditEvent.id)
        return query if run_id is None else query.where(AuditEvent.run_id == run_id)

    # -- watermarks -------------------------------------------------------------------------

    @_retried
    def is_processed(self, sha256: str, pipeline_version: str) -> bool:
        query = sa.select(sa.literal(1)).where(
            ProcessedDocument.sha256 == sha256, ProcessedDocument.pipeline_version == pipeline_version
        )
        return self._one(query) is not None

    @_retried
    def processed_set(self, pipeline_version: str) -> set[str]:
        """SHA-256 of every document this pipeline version has processed."""
        query = sa.select(ProcessedDocument.sha256).where(
            ProcessedDocument.pipeline_version == pipeline_version
        )
        with self.engine.connect() as conn:
            return set(conn.scalars(query))

    @_retried
    def processed_among(self, shas: Iterable[str], pipeline_version: str) -> set[str]:
        """Those of these documents this pipeline version has processed (by the unique index:
        the cost follows how many are asked, not how many were ever processed)."""
        table = ProcessedDocument.__table__
        with self.engine.connect() as conn:
            return {sha for chunk in _chunks(list(dict.fromkeys(shas)))
                    for sha in conn.scalars(sa.select(table.c.sha256).where(
                        table.c.sha256.in_(chunk), table.c.pipeline_version == pipeline_version))}  # fmt: skip

    @_retried
    def mark_processed(self, shas: Iterable[str], pipeline_version: str, run_id: str) -> int:
        """Set the watermark for these documents; returns how many were not marked before."""
        now = utcnow()
        rows = [
            {"sha256": sha, "pipeline_version": pipeline_version, "run_id": run_id, "processed_at": now}
            for sha in dict.fromkeys(shas)
        ]
        with self._write() as conn:
            return self._insert_ignore(conn, ProcessedDocument, rows)

    # -- attempts (poison documents) --------------------------------------------------------

    @_retried
    def document_attempts(self, stage: str, shas: Iterable[str]) -> dict[str, int]:
        """Unfinished attempts of ``stage`` on these documents (absent: none)."""
        table = DocumentAttempt.__table__
        found: dict[str, int] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(dict.fromkeys(shas))):
                query = sa.select(table.c.sha256, table.c.attempts).where(
                    table.c.stage == stage, table.c.sha256.in_(chunk)
                )
                found.update(dict(conn.execute(query).all()))
        return found

    @_retried
    def begin_attempts(self, shas: Iterable[str], stage: str, run_id: str) -> None:
        """Count one more attempt of ``stage`` on these documents, before they go to a worker."""
        table = DocumentAttempt.__table__
        now = utcnow()
        with self._write() as conn:
            for chunk in _chunks(list(dict.fromkeys(shas))):
                rows = [{"sha256": sha, "stage": stage, "attempts": 1, "last_run_id": run_id, "updated_at": now}
                        for sha in chunk]  # fmt: skip
                stmt = self._dialect_insert(table).values(rows)
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=["sha256", "stage"],
                    set_={"attempts": table.c.attempts + 1, "last_run_id": run_id, "updated_at": now},
                ))  # fmt: skip

    @_deferrable
    @_retried
    def end_attempts(self, stage: str, shas: Iterable[str]) -> None:
        """Forget the attempts of ``stage`` on documents it has finished with, whatever the outcome."""
        table = DocumentAttempt.__table__
        with self._write() as conn:
            for chunk in _chunks(list(dict.fromkeys(shas))):
                conn.execute(sa.delete(table).where(table.c.stage == stage, table.c.sha256.in_(chunk)))

    def _forget_attempts_of(self, conn: Connection, run_id: str) -> None:
        """Take back the attempts ``run_id`` counted last (its documents are not to blame)."""
        table = DocumentAttempt.__table__
        mine = table.c.last_run_id == run_id
        conn.execute(sa.delete(table).where(mine, table.c.attempts <= 1))
        conn.execute(sa.update(table).where(mine).values(attempts=table.c.attempts - 1, updated_at=utcnow()))

    # -- preprocess results -----------------------------------------------------------------

    @_retried
    def save_preprocess_results(self, run_id: str, records: Iterable[PreprocessRecord]) -> None:
        """Upsert per-document measurements of a run (a retried task overwrites its own rows),
        and the band index of their perceptual hashes in the same transaction."""
        latest = {record.sha256: record for record in records}
        rows = [{**record.model_dump(mode="json"), "run_id": run_id} for record in latest.values()]
        table, bands = PreprocessResult.__table__, PhashBand.__table__
        with self._write() as conn:
            for chunk in _chunks(rows):
                stmt = self._dialect_insert(table).values(list(chunk))
                updated = {
                    column.name: stmt.excluded[column.name]
                    for column in table.columns
                    if column.name not in ("id", "sha256", "run_id")
                }
                upsert = stmt.on_conflict_do_update(index_elements=["sha256", "run_id"], set_=updated)
                saved = conn.execute(upsert.returning(table.c.id, table.c.phash)).all()
                conn.execute(sa.delete(bands).where(bands.c.result_id.in_([row.id for row in saved])))
                band_rows = [{"band_key": key, "result_id": row.id} for row in saved for key in band_keys(row.phash)]
                conn.execute(sa.insert(bands), band_rows)

    @_retried
    def preprocess_results(self, run_id: str) -> list[PreprocessRecord]:
        """The measurements saved for one run, by sha256."""
        table = PreprocessResult.__table__
        query = sa.select(table).where(table.c.run_id == run_id).order_by(table.c.sha256)
        return [PreprocessRecord.model_validate(row) for row in self._all(query)]

    @_retried
    def discard_results(self, run_id: str, shas: Iterable[str]) -> dict[str, int]:
        """Delete the preprocess results and extractions ``run_id`` saved for these documents (a
        stopped run's rows for documents it never finished: the run that took them over measures
        and extracts them again), with their hash bands. Returns the rows deleted per table."""
        shas = list(dict.fromkeys(shas))
        deleted = {"preprocess_results": 0, "extractions": 0}
        results, bands = PreprocessResult.__table__, PhashBand.__table__
        with self._write() as conn:
            for chunk in _chunks(shas):
                discarded = sa.select(results.c.id).where(results.c.run_id == run_id, results.c.sha256.in_(chunk))
                conn.execute(sa.delete(bands).where(bands.c.result_id.in_(discarded)))
            for model in (PreprocessResult, ExtractionResult):
                table = model.__table__
                for chunk in _chunks(shas):
                    result = conn.execute(sa.delete(table).where(table.c.run_id == run_id, table.c.sha256.in_(chunk)))
                    deleted[table.name] += result.rowcount
        return deleted

    @_retried
    def nearest_phashes(
        self, queries: Iterable[tuple[str, str]], max_distance: int, *, exclude_run_id: str | None = None
    ) -> dict[str, tuple[int, str]]:
        """For each (sha256, phash): the closest stored document other than itself, as (Hamming
        distance, sha256), if one is within ``max_distance``; ties go to the smaller sha256.
        Results saved by ``exclude_run_id`` are left out (a run looks for earlier documents).

        Each lookup reads only the rows sharing a probed band key (:mod:`mlops.io.phash_index`),
        about a hundred at a million stored hashes, so its cost does not grow with the archive.
        Documents are looked up ``LOOKUP_BATCH`` at a time, a few statements per batch."""
        results = PreprocessResult.__table__
        stored = sa.select(results.c.id, results.c.sha256, results.c.phash)
        if exclude_run_id is not None:
            stored = stored.where(results.c.run_id != exclude_run_id)
        pending = list(dict(queries).items())
        found: dict[str, tuple[int, str]] = {}
        with self.engine.connect() as conn:
            if not can_probe(max_distance):  # too far for the bands to help: compare with everything
                everything = [(row.sha256, hash_value(row.phash)) for row in conn.execute(stored)]
                for sha, phash in pending:
                    if best := nearest(hash_value(phash), everything, max_distance, exclude_sha256=sha):
                        found[sha] = best
                return found
            for batch in _chunks(pending, LOOKUP_BATCH):
                found.update(self._nearest_by_bands(conn, batch, max_distance, stored))
        return found

    def _nearest_by_bands(
        self, conn: Connection, batch: Sequence[tuple[str, str]], max_distance: int, stored: sa.Select[Any]
    ) -> dict[str, tuple[int, str]]:
        """Two statements, not a join: planners misjudge how few rows the probes match, and a
        hash join over every stored result costs what the index is there to save."""
        results, bands = PreprocessResult.__table__, PhashBand.__table__
        asked_by: defaultdict[int, list[str]] = defaultdict(list)
        for sha, phash in batch:
            for key in probe_keys(phash, max_distance) or ():
                asked_by[key].append(sha)
        candidates: defaultdict[str, set[int]] = defaultdict(set)
        probed = sa.select(bands.c.band_key, bands.c.result_id).where(self._one_of(bands.c.band_key, "keys"))
        for key, result_id in conn.execute(probed, {"keys": sorted(asked_by)}):
            for sha in asked_by[key]:
                candidates[sha].add(result_id)
        ids = sorted(set().union(*candidates.values()))
        rows = conn.execute(stored.where(self._one_of(results.c.id, "ids")), {"ids": ids})
        hashes = {row.id: (row.sha256, hash_value(row.phash)) for row in rows}
        found = {}
        for sha, phash in batch:
            near = (hashes[result_id] for result_id in candidates[sha] if result_id in hashes)
            if best := nearest(hash_value(phash), near, max_distance, exclude_sha256=sha):
                found[sha] = best
        return found

    def _one_of(self, column: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[bool]:
        """``column`` equal to one of the list bound to ``name``, sent as one parameter (an array
        on Postgres, a JSON array on SQLite): an IN list of thousands of parameters costs more
        to render and plan than the lookup itself."""
        if self.is_postgres:
            return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(column.type)))
        values = sa.func.json_each(sa.bindparam(name, type_=sa.JSON)).table_valued("value")
        return column.in_(sa.select(values.c.value))

    # -- extractions ------------------------------------------------------------------------

    @_retried
    def save_extractions(
        self, run_id: str, rows: list[dict[str, Any]], validation_pass: dict[str, bool] | None = None
    ) -> int:
        """Upsert ``Extraction.row()`` dicts of a run on (sha256, run_id); return the rows written.

        A retried task overwrites its own rows (all columns, ``data`` and ``created_at``). A
        document missing from ``validation_pass`` (sha256 -> passed) gets NULL. Values are made
        JSON-safe: numpy/pandas scalars become Python values, NaN/None/NaT become null.
        """
        passed = {sha: _plain(flag) for sha, flag in (validation_pass or {}).items()}
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:
            data = _plain(dict(row))
            if not data.get("sha256"):
                raise MetadataError(f"extraction row without sha256: {sorted(data)}")
            latest[data["sha256"]] = data
        now = utcnow()
        records = [
            {
                **{column: data.get(column) for column in EXTRACTION_COLUMNS},
                "run_id": run_id,
                "validation_pass": None if passed.get(sha) is None else bool(passed[sha]),
                "data": data,
                "created_at": now,
            }
            for sha, data in latest.items()
        ]
        table = ExtractionResult.__table__
        with self._write() as conn:
            for chunk in _chunks(records):
                stmt = self._dialect_insert(table).values(list(chunk))
                updated = {
                    column.name: stmt.excluded[column.name]
                    for column in table.columns
                    if column.name not in ("id", "sha256", "run_id")
                }
                conn.execute(stmt.on_conflict_do_update(index_elements=["sha256", "run_id"], set_=updated))
        return len(records)

    @_retried
    def extractions(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Flat extraction rows: the saved ``Extraction.row()`` plus ``run_id`` and ``validation_pass``.

        One run's rows by sha256; all runs' rows in the order they were first written.
        """
        table = ExtractionResult.__table__
        query = sa.select(table.c.run_id, table.c.validation_pass, table.c.data)
        if run_id is None:
            query = query.order_by(table.c.id)
        else:
            query = query.where(table.c.run_id == run_id).order_by(table.c.sha256)
        with self.engine.connect() as conn:
            return [
                {**row.data, "run_id": row.run_id, "validation_pass": row.validation_pass}
                for row in conn.execute(query)
            ]

    @_retried
    def field_history(
        self, fields: Sequence[str], exclude_run_id: str | None = None, limit: int = 5000, *, run_ids: bool = False
    ) -> pd.DataFrame:
        """Numeric values of ``fields`` from the most recent ``limit`` saved extractions of other runs.

        One float64 column per field (non-numeric or missing values are NaN), one row per
        extraction, oldest first; with ``run_ids`` also a ``run_id`` column (a model's training
        window). Values are read from the ``data`` JSON in Python so the query is the same on both
        backends.
        """
        import pandas as pd

        fields = list(fields)
        table = ExtractionResult.__table__
        query = sa.select(table.c.run_id, table.c.data).order_by(table.c.id.desc()).limit(max(int(limit), 0))
        if exclude_run_id is not None:
            query = query.where(table.c.run_id != exclude_run_id)
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
        rows.reverse()
        frame = pd.DataFrame(
            {field: [row.data.get(field) for row in rows] for field in fields}, columns=fields, dtype=object
        )
        frame = frame.apply(lambda column: pd.to_numeric(column, errors="coerce")).astype("float64")
        return frame.assign(run_id=[row.run_id for row in rows]) if run_ids else frame

    # -- findings and metrics ---------------------------------------------------------------

    @_retried
    def replace_findings(self, run_id: str, findings: Iterable[Finding]) -> int:
        """Delete the run's findings and insert these in one transaction; return how many."""
        now = utcnow()
        rows = [
            {
                "run_id": run_id,
                "sha256": finding.sha256,
                "field": finding.field,
                "value": finding.value,
                "detector": finding.detector,
                "severity": finding.severity,
                "reason": finding.reason,
                "created_at": now,
            }
            for finding in findings
        ]
        return self._replace_run_rows(FindingRow, run_id, rows)

    @_retried
    def findings(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Findings in the order they were written (id, run_id, sha256, field, value, detector,
        severity, reason, created_at), optionally of one run."""
        table = FindingRow.__table__
        query = sa.select(table).order_by(table.c.id)
        return self._all(query if run_id is None else query.where(table.c.run_id == run_id))

    @_retried
    def save_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Upsert named numbers of a run on (run_id, name); NaN and None are stored as NULL."""
        rows = [
            {"run_id": run_id, "name": str(name), "value": None if (v := _plain(value)) is None else float(v)}
            for name, value in metrics.items()
        ]
        if not rows:
            return
        table = RunMetric.__table__
        with self._write() as conn:
            for chunk in _chunks(rows):
                stmt = self._dialect_insert(table).values(list(chunk))
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["run_id", "name"], set_={"value": stmt.excluded.value}
                    )
                )

    @_retried
    def metrics(self, run_id: str) -> dict[str, float]:
        """The run's metrics by name (a NULL value comes back as NaN)."""
        query = (
            sa.select(RunMetric.name, RunMetric.value)
            .where(RunMetric.run_id == run_id)
            .order_by(RunMetric.name)
        )
        with self.engine.connect() as conn:
            return {name: math.nan if value is None else float(value) for name, value in conn.execute(query)}

    # -- field statistics -------------------------------------------------------------------

    @_retried
    def replace_field_statistics(self, run_id: str, statistics: Iterable[Mapping[str, Any]]) -> int:
        """Replace the run's field statistics with these in one transaction; return how many.

        A repeated store_results (a retried task, a resumed run) leaves exactly its last set, and a
        field that is gone from the rerun's table does not linger."""
        now = utcnow()
        rows = [
            {**{key: _plain(item.get(key)) for key in ("field", "kind", "count", "missing", "missing_rate",
                                                       "mean_confidence")},
             "stats": _plain(dict(item.get("stats") or {})), "run_id": run_id, "created_at": now}
            for item in statistics
        ]  # fmt: skip
        return self._replace_run_rows(FieldStatisticsRow, run_id, rows)

    @_retried
    def runs_with_field_statistics(self) -> set[str]:
        """The ids of the runs that recorded field statistics (their store_results ran)."""
        with self.engine.connect() as conn:
            return set(conn.scalars(sa.select(FieldStatisticsRow.run_id).distinct()))

    @_retried
    def field_statistics(self, run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Field statistics (run_id, field, kind, count, missing, missing_rate, mean_confidence,
        stats), of these runs or of all, by run then field."""
        table = FieldStatisticsRow.__table__
        query = sa.select(table).order_by(table.c.run_id, table.c.field)
        if run_ids is None:
            return self._all(query)
        return [row for chunk in _chunks(list(run_ids)) for row in self._all(query.where(table.c.run_id.in_(chunk)))]

    # -- helpers ----------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction; on SQLite it takes the write lock up front (BEGIN IMMEDIATE)
        so concurrent writers wait for busy_timeout instead of failing with 'database is locked'.
        Deferred writes being committed share theirs."""
        if (shared := getattr(self._thread_state, "connection", None)) is not None:
            yield shared
            return
        with self.engine.connect() as conn:
            conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    def _replace_run_rows(self, model: type[Base], run_id: str, rows: list[dict[str, Any]]) -> int:
        """Delete the run's rows of ``model`` and insert these, in one transaction; return how many."""
        table = model.__table__
        with self._write() as conn:
            conn.execute(sa.delete(table).where(table.c.run_id == run_id))
            for chunk in _chunks(rows):
                conn.execute(sa.insert(table), list(chunk))
        return len(rows)

    def _insert_ignore(self, conn: Connection, model: type[Base], rows: list[dict[str, Any]]) -> int:
        """INSERT ... ON CONFLICT DO NOTHING; returns the number of rows actually inserted.

        Counted with RETURNING: SQLAlchemy does not promise ``rowcount`` for INSERT on every driver.
        """
        table = model.__table__
        inserted = 0
        for chunk in _chunks(rows):
            stmt = self._dialect_insert(table).values(list(chunk)).on_conflict_do_nothing()
            inserted += len(conn.execute(stmt.returning(*table.primary_key.columns)).all())
        return inserted

    def _one(self, query: sa.Select[Any]) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _row_dict(row)

    def _all(self, query: sa.Select[Any]) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [_row_dict(row) for row in conn.execute(query)]


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _busy_message(lease: Any, run_id: str, now: datetime) -> str:
    same = lease.run_id == run_id
    who = f"another process of run {run_id!r} ({lease.holder})" if same else f"run {lease.run_id!r} ({lease.holder})"
    return (
        f"{who} is live on this store: its last heartbeat was {(now - lease.heartbeat_at).total_seconds():.0f} s ago "
        f"and its lease runs until {_clock(lease.expires_at)}. One run at a time: wait for it to finish, or set "
        f"lease.wait_seconds to wait; a run killed without closing is taken over once its lease expires."
    )


def lease_holder() -> str:
    """Who renews a lease: host and process, for the busy message and the abandoned reason."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RunLease:
    """A run's hold on the store while this process works for it: acquired (waiting up to
    ``wait_seconds`` for another run's live lease), then renewed every ``heartbeat_seconds`` by a
    daemon thread until :meth:`stop`. If the renewal finds the lease gone to another run (this
    process stalled past ``ttl_seconds``), :attr:`lost` is set and :meth:`check` raises."""

    def __init__(
        self,
        store: MetadataStore,
        run_id: str,
        *,
        ttl_seconds: float,
        heartbeat_seconds: float,
        wait_seconds: float = 0.0,
        exclusive: bool = False,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.ttl_seconds = ttl_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.wait_seconds = wait_seconds
        self.exclusive = exclusive
        self.holder = lease_holder()
        self.abandoned: list[str] = []
        self.lost = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_settings(cls, store: MetadataStore, run_id: str, settings: Settings, *, exclusive: bool = False) -> RunLease:
        lease = settings.lease
        return cls(store, run_id, ttl_seconds=lease.ttl_seconds, heartbeat_seconds=lease.heartbeat_seconds,
                   wait_seconds=lease.wait_seconds, exclusive=exclusive)  # fmt: skip

    def acquire(self, *, continuing: bool = False) -> RunLease:
        """Take the lease (waiting for a live one up to ``wait_seconds``) and start the heartbeat."""
        deadline = time.monotonic() + self.wait_seconds
        announced = False
        while True:
            try:
                self.abandoned = self.store.acquire_lease(
                    self.run_id, self.holder, self.ttl_seconds, exclusive=self.exclusive, continuing=continuing
                )
                break
            except RunSuperseded:
                raise
            except RunBusy as busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if self.wait_seconds:
                        raise RunBusy(f"{busy} (waited {self.wait_seconds:g} s)", run_id=busy.run_id) from None
                    raise
                if not announced:
                    log.warning("waiting up to %.0f s for the store: %s", self.wait_seconds, busy)
                    announced = True
                time.sleep(min(self.heartbeat_seconds, remaining))
        self._start()
        return self

    def _start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-heartbeat-{self.run_id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stopping.wait(self.heartbeat_seconds):
            try:
                if self.store.renew_lease(self.run_id, self.holder, self.ttl_seconds):
                    continue
            except Exception as error:  # noqa: BLE001 - the next beat tries again; the lease has slack
                log.warning("run %s: lease heartbeat failed: %s", self.run_id, _first_line(error))
                continue
            if not self._stopping.is_set():
                self.lost = True
                log.error("run %s lost its lease on the store (another run took over): stopping", self.run_id)
            return

    def check(self) -> None:
        """Raise :class:`LeaseLost` if another run took the lease over."""
        if self.lost:
            raise LeaseLost(
                f"run {self.run_id!r} lost its lease on the store: it stalled longer than lease.ttl_seconds "
                f"({self.ttl_seconds:g} s) and another run took over its documents. Start a new run."
            )

    def stop(self, *, release: bool = False) -> None:
        """Stop the heartbeat; give the lease up too with ``release`` (the run is over)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_seconds + 30)
            self._thread = None
        if release:
            self.store.release_lease(self.run_id)


def _sqlite_engine(url: URL) -> Engine:
    """A SQLite engine safe for several worker processes: WAL, busy_timeout, foreign keys, and
    transactions begun explicitly (pysqlite's own implicit BEGIN is switched off)."""
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode a commit then needs no fsync (~3 ms each, a dozen per document) and a killed
        # process still loses nothing; only a power cut can drop the last commits, never corrupt.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'DEFERRED')}")

    return engine


def _airflow_connection_url(conn_id: str) -> URL:
    """The SQLAlchemy URL of an Airflow Postgres connection (needs the postgres provider)."""
    try:
        from airflow.providers.postgres.hooks.postgres import PostgresHook
    except ImportError as error:
        raise MetadataError(
            f"metadata.airflow_conn_id={conn_id!r} needs apache-airflow-providers-postgres; "
            "install it or set metadata.url instead"
        ) from error
    hook = PostgresHook(postgres_conn_id=conn_id)
    try:
        return sa.make_url(hook.sqlalchemy_url)
    except AttributeError:
        return sa.make_url(hook.get_uri())
