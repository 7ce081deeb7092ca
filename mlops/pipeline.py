"""Run the whole chain in one process (the CLI's ``run``); Airflow runs the same stages as tasks.

The process holds the store's run lease for the whole run (exclusively: a second process with
the same run id is refused too), renewed by a heartbeat thread, and gives it up when the run is
closed, whatever the outcome. :func:`stop_on_signals` (used by the CLI) turns SIGTERM into
:class:`RunInterrupted`, which closes the run as ``interrupted``.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import threading
from contextlib import suppress
from typing import Any

from mlops.config import Settings
from mlops.errors import RunBusy, RunInterrupted, describe
from mlops.io.metadata import RunLease
from mlops.stages import STAGE_NAMES, STOP_SIGNALS, interrupted, open_context, run_stage, stop_on_signals
from mlops.stages.generate_reports import publish_failure

log = logging.getLogger(__name__)
# What later stages import inside their functions (Great Expectations ~2.5 s, scikit-learn and the
# OCR engine ~1 s). A run with documents imports them on a thread while it waits for the worker
# server, when one core would otherwise idle.
LAZY_IMPORTS = ["great_expectations", "mlops.extraction.extractors", "mlops.extraction.ocr"]
__all__ = ["run_all", "stop_on_signals"]


def run_all(run_id: str, settings: Settings | None = None, **options: Any) -> dict[str, Any]:
    """Every stage in order; returns run_summary.json. A failing stage re-raises its error after
    the run's summary and report are published with status failed and that error (outcome
    ``error``). Raises :class:`mlops.errors.RunBusy` if another run is live on the store, and
    :class:`RunInterrupted` (the run closed as ``interrupted``) on SIGTERM or Ctrl-C."""
    ctx = open_context(run_id, settings, **options)
    ctx.lease = RunLease.for_settings(ctx.metadata, ctx.run_id, ctx.settings, exclusive=True).acquire()
    if ctx.lease.abandoned:
        log.warning("runs abandoned by their processes, taken over by %s: %s", ctx.run_id, ", ".join(ctx.lease.abandoned))
    name = STAGE_NAMES[0]
    try:
        for name in STAGE_NAMES:
            try:
                outcome = run_stage(name, ctx.run_id, ctx=ctx)
                if name == STAGE_NAMES[0] and outcome.get("documents"):
                    _import_later_stages(ctx.settings)
            except RunBusy:
                raise  # it lost the store to another run: that run reports, not this one
            except Exception as error:
                if STOP_SIGNALS:  # e.g. its workers got the same SIGTERM and died first
                    raise RunInterrupted(STOP_SIGNALS[0]) from error
                try:
                    publish_failure(ctx, name, describe(error))
                except Exception as unpublished:  # noqa: BLE001 - logged; the run is closed and the error re-raised
                    log.error("could not publish the failed run %s (%s); closing it as an error",
                              ctx.run_id, describe(unpublished))  # fmt: skip
                    with suppress(Exception):
                        ctx.metadata.finish_run(ctx.run_id, "failed", {}, outcome="error",
                                                reason=f"task {name} failed: {describe(error)}")  # fmt: skip
                raise
    except (RunInterrupted, KeyboardInterrupt) as stop:
        raise interrupted(ctx, name, stop) from None
    finally:
        with suppress(Exception):
            ctx.lease.stop(release=True)
    summary_key = f"{ctx.settings.prefixes.reports}/{ctx.run_id}/run_summary.json"
    return json.loads(ctx.store.get_bytes(summary_key)) | {"report": outcome["report"]}


def _import_later_stages(settings: Settings) -> None:
    """The stage modules here and now, then :data:`LAZY_IMPORTS` in the background: this thread
    then imports nothing the other one is importing, so neither waits on the other's module.

    The objects loaded so far, then those the thread loaded, are frozen out of the garbage
    collector: modules live as long as the process, and its full passes over them (~0.2-0.3 s
    each, three during the Great Expectations import alone) were CPU taken from the workers.
    The thread also loads the extractor's models (cached per process), which extract_data checks
    before its workers start, when both cores would wait for it."""
    for name in STAGE_NAMES[1:]:
        importlib.import_module(f"mlops.stages.{name}")

    def import_lazily() -> None:
        for module in LAZY_IMPORTS:
            with suppress(Exception):  # whoever imports it next gets the error
                importlib.import_module(module)
        if settings.extract.extractor == "builtin":
            from mlops.extraction.trained_models import load_models

            with suppress(Exception):  # extract_data loads it again and reports the error
                load_models(str(settings.extractor_model_file))
        gc.freeze()

    gc.freeze()
    threading.Thread(target=import_lazily, daemon=True, name="import-later-stages").start()
