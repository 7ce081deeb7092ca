"""The pipeline's stages. Each module is named after its Airflow task id and exposes
``run(ctx, batch=None) -> dict``: a small summary (counts, keys) fit for XCom and the CLI.

Runners (the DAG, dvc.yaml, the CLI) only call :func:`run_stage`. It holds the store's run lease
while the stage works (:class:`mlops.io.metadata.RunLease`): one live run per store, every
process of that run let through.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any

from mlops.config import Settings, get_settings
from mlops.errors import RunInterrupted
from mlops.io.catalog import Catalog
from mlops.io.metadata import MetadataStore, RunLease
from mlops.io.objects import ObjectStore, open_object_store
from mlops.models import RunOutcome

STAGE_NAMES: tuple[str, ...] = (
    "acquire_documents",
    "validate_documents",
    "preprocess_documents",
    "extract_data",
    "validate_extraction",
    "detect_anomalies",
    "check_bias",
    "store_results",
    "generate_reports",
)

log = logging.getLogger("mlops.stages")
STOP_SIGNALS: list[str] = []  # the stop signal stop_on_signals received, if any
SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT (Ctrl-C)"}


@dataclass
class StageContext:
    """Everything a stage may touch: no stage reads the environment or global state."""

    run_id: str
    settings: Settings
    store: ObjectStore
    metadata: MetadataStore
    reprocess: bool = False
    max_documents: int | None = None
    as_of: date | None = None
    lease: RunLease | None = None  # held by the runner across stages (the CLI's run), else per stage
    links: dict[str, str] = field(default_factory=dict)  # browser URLs from the runner: airflow_run, report

    @cached_property
    def run_date(self) -> date:
        """The date rules are evaluated against: the runner's logical date, else the run's start."""
        if self.as_of:
            return self.as_of
        run = self.metadata.get_run(self.run_id)
        return run["started_at"].date() if run else datetime.now(UTC).date()

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.store, self.settings.prefixes.runs, self.run_id)

    def audit(self, stage: str, event: str, sha256: str | None = None, **details: Any) -> None:
        self.metadata.record_event(self.run_id, stage, event, sha256=sha256, details=details or None)


def open_context(run_id: str, settings: Settings | None = None, **options: Any) -> StageContext:
    """Options: reprocess, max_documents, as_of, links (see StageContext)."""
    settings = settings or get_settings()
    metadata = MetadataStore.from_settings(settings)
    metadata.migrate()
    return StageContext(
        run_id=normalise_run_id(run_id),
        settings=settings,
        store=open_object_store(settings),
        metadata=metadata,
        **options,
    )


def batch_count(documents: int, batch_size: int) -> int:
    """Extraction batches: at least one, so an empty run still flows through every task to its report."""
    return max(1, math.ceil(documents / batch_size))


def normalise_run_id(run_id: str) -> str:
    """Airflow run ids (``scheduled__2026-01-01T00:00:00+00:00``) made safe for object keys and paths."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._")
    if not safe:
        raise ValueError(f"run id {run_id!r} has no usable characters")
    return safe


def run_stage(
    name: str,
    run_id: str,
    *,
    batch: int | None = None,
    settings: Settings | None = None,
    ctx: StageContext | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Run one stage for one run; records its duration in the audit log and returns its summary.

    Without a lease in ``ctx`` the stage takes the store's lease for its run (waiting or raising
    :class:`mlops.errors.RunBusy` while another run's is live) and keeps it renewed while it works;
    the lease outlives the stage (the run's next task comes in another process) until the run is
    closed. A stage stopped by SIGTERM or Ctrl-C closes its run as ``interrupted``.
    """
    if name not in STAGE_NAMES:
        raise ValueError(f"unknown stage {name!r}; stages are: {', '.join(STAGE_NAMES)}")
    module = importlib.import_module(f"mlops.stages.{name}")
    ctx = ctx or open_context(run_id, settings, **options)
    run_id = ctx.run_id
    lease = ctx.lease
    if lease is None:
        lease = RunLease.for_settings(ctx.metadata, run_id, ctx.settings).acquire(continuing=name != STAGE_NAMES[0])
    try:
        lease.check()
        if name == STAGE_NAMES[0] or ctx.metadata.get_run(run_id) is None:
            ctx.metadata.start_run(run_id, ctx.settings.fingerprint(), ctx.settings.pipeline_version)
        started = time.monotonic()
        with ctx.metadata.deferred_writes():
            summary = module.run(ctx, batch=batch) if batch is not None else module.run(ctx)
        seconds = round(time.monotonic() - started, 3)
        lease.check()
        ctx.catalog.save_json(f"{name}/summary" if batch is None else f"{name}/summary-{batch:04d}", summary)
        ctx.audit(name, "stage_finished", seconds=seconds, batch=batch, summary=summary)
    except (RunInterrupted, KeyboardInterrupt) as stop:
        if ctx.lease is None:  # the runner holding the lease closes the run itself
            raise interrupted(ctx, name, stop) from None
        raise
    except Exception as error:
        if STOP_SIGNALS and ctx.lease is None:  # e.g. its workers got the same SIGTERM and died first
            raise interrupted(ctx, name, RunInterrupted(STOP_SIGNALS[0])) from error
        raise
    finally:
        if ctx.lease is None:
            lease.stop()
    log.info("%s finished in %.1f s: %s", name, seconds, summary)
    return summary


def interrupted(ctx: StageContext, stage: str, stop: BaseException) -> RunInterrupted:
    """Close the run as ``interrupted`` (reason, audit event, lease released, its documents'
    attempts not counted against them); return the error to raise, with the message to show."""
    signal_name = stop.signal_name if isinstance(stop, RunInterrupted) else SIGNAL_NAMES[signal.SIGINT]
    reason = f"stopped by {signal_name} during {stage}"
    try:
        ctx.metadata.stop_run(ctx.run_id, RunOutcome.INTERRUPTED, reason, stage=stage)
    except Exception:  # say what happened even when the database is gone too
        log.exception("could not record that run %s was interrupted", ctx.run_id)
    log.warning("run %s %s; its unfinished documents go to the next run", ctx.run_id, reason)
    return RunInterrupted(
        signal_name,
        f"run {ctx.run_id} interrupted: {reason}. Nothing is lost: the next run takes its unfinished documents.",
    )


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While the block runs, SIGTERM or SIGINT raises :class:`RunInterrupted` in the main thread,
    once: another while the run is closing is ignored (SIGKILL remains for the impatient). For the
    CLI (Ctrl-C, ``kill``, docker stop) and for Airflow tasks, whose supervisor stops a task it
    kills (marked failed in the UI, a worker shutting down) with SIGINT, then SIGTERM after 5 s:
    Airflow's own SIGTERM handler only calls the operator's ``on_kill`` and lets the task go on."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    STOP_SIGNALS.clear()

    def handler(signum: int, _frame: Any) -> None:
        if STOP_SIGNALS:
            return
        STOP_SIGNALS.append(SIGNAL_NAMES.get(signum, signal.Signals(signum).name))
        raise RunInterrupted(STOP_SIGNALS[0])

    previous = {signum: signal.signal(signum, handler) for signum in SIGNAL_NAMES}
    try:
        yield
    finally:
        for signum, former in previous.items():
            signal.signal(signum, former)
        STOP_SIGNALS.clear()
