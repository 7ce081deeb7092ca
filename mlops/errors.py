"""Exceptions the platform raises on purpose; each message names the thing at fault and the fix."""

import re


class MlopsError(Exception):
    """Base of every error the platform raises deliberately."""


class ConfigError(MlopsError):
    """A setting is missing or invalid. The message names the key and how to fix it."""


class ObjectNotFound(MlopsError, KeyError):
    """An object key does not exist in the object store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "object not found"


class ObjectStoreError(MlopsError):
    """The object store failed after its retries (an infrastructure fault: Airflow retries the task)."""


class DatasetNotFound(MlopsError):
    """A stage asked the catalog for a dataset an earlier stage has not written for this run."""


class DependencyMissing(MlopsError):
    """A system program the platform needs (e.g. Tesseract) is not installed."""


class RunBusy(MlopsError):
    """Another run holds the store's lease (one live run per store); the message names it."""

    def __init__(self, message: str, run_id: str):
        super().__init__(message)
        self.run_id = run_id


class RunSuperseded(RunBusy):
    """A stopped run cannot go on: it was interrupted, or a later run has taken over its
    unfinished documents."""


class LeaseLost(RunBusy):
    """This run stalled past its lease and another run took the store over."""

    def __init__(self, message: str, run_id: str = ""):
        super().__init__(message, run_id)


class RunInterrupted(BaseException):
    """The run's process was asked to stop (SIGTERM, Ctrl-C). A BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` mistakes the stop for a document's fault."""

    def __init__(self, signal_name: str, message: str = ""):
        super().__init__(message or f"stopped by {signal_name}")
        self.signal_name = signal_name


_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@", re.IGNORECASE)


def redact(text: str) -> str:
    """The text with the password of every URL in it masked (``postgresql://user:***@host/db``):
    messages echo bad values, and a database URL carries its password."""
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


def describe(error: BaseException | None) -> str:
    """``Type: message`` of an error, for run summaries and logs (a KeyError's message alone is a
    bare key); URL passwords masked."""
    if error is None:
        return "unknown error"
    return redact(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
