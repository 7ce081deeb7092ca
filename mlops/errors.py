"""Exceptions the platform raises on purpose; each message names the thing at fault and the fix."""


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


def describe(error: BaseException | None) -> str:
    """``Type: message`` of an error, for run summaries and logs (a KeyError's message alone is a bare key)."""
    if error is None:
        return "unknown error"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
