"""Worker functions that misbehave like hostile files do (importable by the worker processes)."""

import time


def hang(_: object) -> None:
    time.sleep(60)


def balloon(_: object) -> int:
    return len(bytearray(4 * 1024**3))


def double(value: int) -> int:
    return value * 2
