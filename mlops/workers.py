"""Run per-document work on untrusted bytes in a bounded pool of sandboxed worker processes.

Like Apache Tika Pipes, each worker is a process of its own with a pipe of its own and holds one
document at a time, so whatever goes wrong is pinned on exactly that document and comes back as
a value, ``WorkerFailure``, that the stage turns into a quarantine reason:

- any exception the parser raises (Pillow raises ``TypeError`` on some fuzzed TIFFs): ``corrupt``,
  or the reason a :class:`Rejected` carries;
- ``MemoryError`` under the worker's address-space cap, or the worker dying (a signal, a crash in
  C code, ``os._exit``): ``resource_limit``;
- no result within the time limit: the worker is killed, ``timeout``.

A killed or dead worker is replaced and the other documents go on. Two things are nobody's
document's fault and stop the run (:class:`WorkerPoolError`): a worker that dies before it is
ready for its first document, and one terminated from outside (SIGTERM, SIGHUP: a shutdown).
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, TypeVar

from mlops.errors import DependencyMissing
from mlops.models import QuarantineReason
from mlops.progress import progress

Job = TypeVar("Job")
MAX_TASKS_PER_WORKER = 200  # a fresh process now and then in case a parser leaks (RSS measured flat over 1,200)
START_SECONDS = 120.0  # a worker imports its stage's libraries before it is ready
MAX_DETAIL_CHARS = 500
_READY = "ready"
_DIED = object()
_NOTHING = object()
_SHUTDOWN_SIGNALS = (-signal.SIGTERM, -signal.SIGHUP)
# What the stages run in their workers. The forkserver imports them once and every worker is a
# fork of it: otherwise each worker of each batch imported them itself (~4 s, more than a batch
# of text PDFs takes to extract).
WORKER_MODULES = ["mlops.documents", "mlops.page_measures", "mlops.extraction.extractors"]


class Rejected(Exception):
    """Bad input with a quarantine reason, raised by the code that opens untrusted bytes."""

    def __init__(self, reason: QuarantineReason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class WorkerPoolError(DependencyMissing):
    """The worker processes failed, not a document: one died before it was ready for its first
    document, or was terminated from outside (an infrastructure error, exit code 4)."""


@dataclass(frozen=True)
class WorkerFailure:
    reason: QuarantineReason
    detail: str


def failure_of(error: BaseException) -> WorkerFailure:
    """What an exception raised on untrusted bytes says about the document."""
    if isinstance(error, Rejected):
        return WorkerFailure(error.reason, error.detail)
    if isinstance(error, MemoryError):
        return WorkerFailure(QuarantineReason.RESOURCE_LIMIT, "worker memory cap exceeded")
    detail = f"the parser failed: {type(error).__name__}: {error}"
    return WorkerFailure(QuarantineReason.CORRUPT, detail[:MAX_DETAIL_CHARS])


def _limit_worker(memory_mb: int) -> None:
    memory_bytes = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def _forkserver() -> multiprocessing.context.ForkServerContext:
    """The forkserver context with :data:`WORKER_MODULES` preloaded. The server inherits this
    process's environment when it starts, so the libraries it loads see one OpenMP thread: one
    single-threaded Tesseract / BLAS per core, as threads would oversubscribe the pool."""
    os.environ["OMP_THREAD_LIMIT"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_MODULES)
    return context


def start_worker_server() -> None:
    """Start the worker server ahead of the first pool, so it imports :data:`WORKER_MODULES`
    (~3 s) on another core while the caller goes on (it does not wait for them)."""
    from multiprocessing import forkserver

    _forkserver()
    forkserver.ensure_running()


def _exit_with_the_run() -> None:
    """A worker goes as soon as the process that started it is gone (killed, say), even in the
    middle of a document, instead of parsing on unwatched."""
    run = multiprocessing.parent_process()
    if run is not None:
        threading.Thread(target=lambda: (run.join(), os._exit(1)), daemon=True).start()


def _serve(conn: Connection, function: Callable[[Any], Any], memory_mb: int) -> None:
    """The worker's loop: one job in, one (ok, value) out, until the pipe closes.

    Ctrl-C is for the main process: it stops the run and kills its workers itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()  # the server's preloaded modules: never garbage, and pages stay shared with it
    _exit_with_the_run()
    _limit_worker(memory_mb)
    conn.send(_READY)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        try:
            reply = (True, function(job))
        except Exception as error:  # noqa: BLE001 - any parser error on untrusted bytes is a verdict
            reply = (False, failure_of(error))
        try:
            conn.send(reply)
        except Exception as error:  # noqa: BLE001 - a result that cannot be pickled
            conn.send((False, failure_of(error)))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    deadline: float
    ready: bool = False
    index: int | None = None  # of the job it holds
    tasks: int = 0


class _Pool:
    """``size`` workers; :meth:`collect` waits for results, deaths, timeouts and replaces workers."""

    def __init__(self, function: Callable[[Any], Any], size: int, timeout_seconds: float, memory_mb: int):
        self.function = function
        self.timeout_seconds = timeout_seconds
        self.memory_mb = memory_mb
        self.context = _forkserver()
        self.workers: list[_Worker] = []
        for _ in range(size):
            self.workers.append(self._start())

    def _start(self) -> _Worker:
        parent, child = self.context.Pipe()
        process = self.context.Process(
            target=_serve, args=(child, self.function, self.memory_mb), name="mlops-worker", daemon=True
        )
        process.start()
        child.close()
        return _Worker(process, parent, deadline=time.monotonic() + START_SECONDS)

    def close(self) -> None:
        for worker in self.workers:
            _stop(worker)
        self.workers = []

    @property
    def busy(self) -> bool:
        return any(worker.index is not None for worker in self.workers)

    def idle_worker(self) -> _Worker | None:
        return next((worker for worker in self.workers if worker.ready and worker.index is None), None)

    def submit(self, worker: _Worker, index: int, job: Any) -> None:
        worker.index = index
        worker.deadline = time.monotonic() + self.timeout_seconds
        try:
            worker.conn.send(job)
        except OSError:
            pass  # the worker died reading it: collect() blames the job

    def collect(self) -> list[tuple[int, Any]]:
        """Wait for the next events; return (job index, result or WorkerFailure) of finished jobs."""
        timeout = max(0.0, min(worker.deadline for worker in self.workers) - time.monotonic())
        wait([handle for worker in self.workers for handle in (worker.conn, worker.process.sentinel)],
             timeout=None if math.isinf(timeout) else timeout)
        finished = []
        for worker in list(self.workers):
            message = _receive(worker)
            if message == _READY:
                worker.ready, worker.deadline = True, math.inf
            elif isinstance(message, tuple):
                finished.append((worker.index, message[1]))
                worker.index, worker.deadline, worker.tasks = None, math.inf, worker.tasks + 1
                if worker.tasks >= MAX_TASKS_PER_WORKER or (
                    not message[0] and message[1].reason is QuarantineReason.RESOURCE_LIMIT
                ):
                    self._replace(worker)
            elif message is _DIED:
                exitcode = self._replace(worker)
                exit_status = _describe_exit(exitcode)
                if exitcode in _SHUTDOWN_SIGNALS:
                    raise WorkerPoolError(f"a worker process {exit_status}: terminated from outside, the run stops")
                if not worker.ready:
                    raise WorkerPoolError(
                        f"a worker process {exit_status} before it was ready for a document. Fix: check "
                        f"that `python -c 'import {self.function.__module__}'` works and that "
                        f"limits.worker_memory_mb ({self.memory_mb}) leaves room for its libraries."
                    )
                if worker.index is not None:
                    finished.append(
                        (worker.index, WorkerFailure(QuarantineReason.RESOURCE_LIMIT, f"worker {exit_status}"))
                    )
            elif time.monotonic() >= worker.deadline:
                self._replace(worker)
                if worker.index is None:
                    raise WorkerPoolError(f"a worker process was not ready within {START_SECONDS:g} s")
                detail = f"no result within {self.timeout_seconds:g} s"
                finished.append((worker.index, WorkerFailure(QuarantineReason.TIMEOUT, detail)))
        return finished

    def _replace(self, worker: _Worker) -> int | None:
        """Stop a worker, start a fresh one in its place; returns the old one's exit code."""
        exitcode = _stop(worker)
        self.workers[self.workers.index(worker)] = self._start()
        return exitcode


def _receive(worker: _Worker) -> Any:
    try:
        if worker.conn.poll():
            return worker.conn.recv()
    except (EOFError, OSError):
        return _DIED
    return _NOTHING if worker.process.is_alive() else _DIED


def _stop(worker: _Worker) -> int | None:
    worker.conn.close()
    worker.process.kill()
    worker.process.join()
    return worker.process.exitcode


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"died (signal {signal.Signals(-exitcode).name})"
    return f"died (exit code {exitcode})"


def run_sandboxed(
    function: Callable[[Job], Any],
    jobs: Iterable[Job],
    *,
    total: int,
    workers: int,
    timeout_seconds: float,
    memory_mb: int,
    desc: str,
) -> Iterator[tuple[Job, Any]]:
    """Yield (job, result) in input order; result is a WorkerFailure when the document failed
    (see the module docstring). Exceptions raised here are ours: reading the jobs, or
    :class:`WorkerPoolError`.

    A job is pulled from ``jobs`` only when a worker is free to take it, and at most
    ``2 * workers`` jobs are held at once, so a run over thousands of documents never holds
    more than a few documents' bytes in memory. With ``workers=1`` exactly one document is out
    at a time, and its result is handed over before the next one is pulled.
    """
    if total == 0:
        return
    yield from progress(_run(function, jobs, max(1, min(workers, total)), timeout_seconds, memory_mb),
                        total=total, desc=desc)


def _run(
    function: Callable[[Job], Any], jobs: Iterable[Job], size: int, timeout_seconds: float, memory_mb: int
) -> Iterator[tuple[Job, Any]]:
    pending = iter(jobs)
    held: dict[int, Job] = {}
    results: dict[int, Any] = {}
    next_index = next_out = 0
    exhausted = False
    pool = _Pool(function, size, timeout_seconds, memory_mb)
    try:
        while True:
            while next_out in results:
                yield held.pop(next_out), results.pop(next_out)
                next_out += 1
            while not exhausted and next_index - next_out < 2 * size and (worker := pool.idle_worker()):
                job = next(pending, _NOTHING)
                if job is _NOTHING:
                    exhausted = True
                    break
                held[next_index] = job
                pool.submit(worker, next_index, job)
                next_index += 1
            if exhausted and not pool.busy and not results:
                return
            results.update(pool.collect())
    finally:
        pool.close()
