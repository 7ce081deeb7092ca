"""Worker functions that misbehave like hostile files do (importable by the worker processes).

Each takes a job and misbehaves only when the job asks for it, so one pool run can mix good and
bad documents: a job is an int (good: doubled) or the name of a misbehaviour.
"""

import ctypes
import os
import signal
import time


def hang(_: object) -> None:
    time.sleep(60)


def balloon(_: object) -> int:
    return len(bytearray(4 * 1024**3))


def double(value: int) -> int:
    return value * 2


def mixed(job: int | str) -> int:
    """Double an int; otherwise do what the job's name says."""
    if isinstance(job, int):
        return double(job)
    return MISBEHAVIOURS[job]()


def _raise_type_error() -> None:
    raise TypeError("Missing dimensions")  # what Pillow raises on some fuzzed TIFFs


def _unpicklable() -> object:
    return lambda: None


MISBEHAVIOURS = {
    "exit": lambda: os._exit(3),
    "segfault": lambda: ctypes.string_at(0),
    "type_error": _raise_type_error,
    "balloon": lambda: balloon(None),
    "hang": lambda: hang(None),
    "unpicklable": _unpicklable,
    "sigterm": lambda: os.kill(os.getpid(), signal.SIGTERM),  # a shutdown, not the document
}



PILL = b"%POISON-PILL"


def inspect_or_hang_on_pill(job):
    """inspect_document, except that a document carrying PILL never comes back, as if it had taken
    the whole run down with it (the worker goes when its run is killed)."""
    from mlops.documents import inspect_document

    if PILL in job.data:
        time.sleep(3600)
    return inspect_document(job)


def validate_with_a_pill_that_never_returns(run_id: str) -> None:
    """The validate stage of ``run_id``, as a run a poison document kills (run it in a subprocess)."""
    import mlops.stages.validate_documents as stage
    from mlops.stages import run_stage

    stage.inspect_document = inspect_or_hang_on_pill
    run_stage("validate_documents", run_id)
