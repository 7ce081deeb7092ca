"""Worker functions that misbehave like hostile files do (importable by the worker processes).

Each takes a job and misbehaves only when the job asks for it, so one pool run can mix good and
bad documents: a job is an int (good: doubled) or the name of a misbehaviour.
"""

import ctypes
import os
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
}

