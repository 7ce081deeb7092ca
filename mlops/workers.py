"""Run per-document work on untrusted bytes in a bounded pool of sandboxed worker processes.

Like Apache Tika Pipes, a parser that hangs or balloons memory only loses its own worker:
each task has a wall-clock limit and each worker an address-space cap, and the failure comes
back as a value (``WorkerFailure``) the stage turns into a quarantine reason.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

from pebble import ProcessExpired, ProcessPool

from mlops.models import QuarantineReason
from mlops.progress import progress

Job = TypeVar("Job")


@dataclass(frozen=True)
class WorkerFailure:
    reason: QuarantineReason
    detail: str


def _limit_worker(memory_mb: int) -> None:
    memory_bytes = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # One single-threaded Tesseract / BLAS per core: threads would oversubscribe the pool.
    os.environ["OMP_THREAD_LIMIT"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"


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
    """Yield (job, result) in input order; result is a WorkerFailure when the worker timed out,
    ran out of memory, or died. Other exceptions propagate: they are bugs, not bad input.

    Jobs are pulled lazily and at most ``2 * workers`` are in flight, so a run over thousands
    of documents never holds more than a few documents' bytes in memory.
    """
    if total == 0:
        return
    workers = max(1, min(workers, total))
    with ProcessPool(
        max_workers=workers,
        max_tasks=50,
        initializer=_limit_worker,
        initargs=(memory_mb,),
        context=multiprocessing.get_context("forkserver"),
    ) as pool:
        in_flight: deque[tuple[Job, Any]] = deque()
        pending = iter(jobs)

        def results() -> Iterator[tuple[Job, Any]]:
            for job in pending:
                in_flight.append((job, pool.schedule(function, args=(job,), timeout=timeout_seconds)))
                if len(in_flight) >= 2 * workers:
                    yield _finish(in_flight.popleft(), timeout_seconds)
            while in_flight:
                yield _finish(in_flight.popleft(), timeout_seconds)

        yield from progress(results(), total=total, desc=desc)


def _finish(entry: tuple[Job, Any], timeout_seconds: float) -> tuple[Job, Any]:
    job, future = entry
    return job, _outcome(future, timeout_seconds)


def _outcome(future: Any, timeout_seconds: float) -> Any:
    try:
        return future.result()
    except FutureTimeout:
        return WorkerFailure(QuarantineReason.TIMEOUT, f"no result within {timeout_seconds:g} s")
    except MemoryError:
        return WorkerFailure(QuarantineReason.RESOURCE_LIMIT, "worker memory cap exceeded")
    except ProcessExpired as died:
        return WorkerFailure(QuarantineReason.RESOURCE_LIMIT, f"worker died (exit code {died.exitcode})")
