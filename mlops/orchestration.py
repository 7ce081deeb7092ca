"""The Airflow runner's side of a task: turn the task context into one ``run_stage`` call.

The DAG file only wires tasks; everything it needs from the platform is in this module,
imported inside task bodies so the DAG file itself parses fast.
"""

from __future__ import annotations

import logging
from typing import Any

from mlops.config import get_settings, load_settings
from mlops.stages import normalise_run_id, open_context, run_stage

log = logging.getLogger("mlops.orchestration")
# The XCom a task returns is its summary, except where a mapped task expands over one of its values.
MAPPED_OVER = {"preprocess_documents": "batches"}


def allow_child_processes() -> None:
    """Let this task process start the stages' sandboxed worker pools (forkserver) under Airflow.

    * Under the CeleryExecutor a task runs in a process forked from a Celery (billiard) pool
      process and inherits its multiprocessing identity: the daemon flag, so multiprocessing
      refuses every child ("daemonic processes are not allowed to have children",
      apache/airflow #14896, celery/celery #1709), and an authkey of billiard's type, which the
      forkserver context cannot pickle. Nothing joins this process as a multiprocessing child:
      clear the flag, keep the key's bytes.
    * ``__main__`` is the ``airflow`` CLI script, which every forkserver/spawn child would run
      again as ``__mp_main__``: it imports Airflow, which fails in a task process because the
      supervisor blocks the metadata DB (``airflow-db-not-allowed:///``), and costs seconds per
      worker anyway. The workers need nothing from it, so children skip it.
    """
    import multiprocessing
    import sys
    from multiprocessing.process import AuthenticationString

    process = multiprocessing.current_process()
    process._config.pop("daemon", None)
    process._config["authkey"] = AuthenticationString(bytes(process.authkey))
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__spec__", None) is None:
        main.__dict__.pop("__file__", None)


def run_task(stage: str, context: dict[str, Any], batch: int | None = None) -> dict[str, Any]:
    """Run ``stage`` for the DAG run in ``context`` with the trigger form's params."""
    allow_child_processes()
    params = context.get("params") or {}
    landing_prefix = params.get("landing_prefix")
    settings = load_settings(prefixes={"landing": landing_prefix}) if landing_prefix else get_settings()
    logical_date = context.get("logical_date") or context["dag_run"].run_after
    summary = run_stage(
        stage,
        context["run_id"],
        batch=batch,
        settings=settings,
        reprocess=bool(params.get("reprocess", False)),
        max_documents=params.get("max_documents") or None,
        as_of=logical_date.date(),
    )
    return summary[MAPPED_OVER[stage]] if stage in MAPPED_OVER else summary


def record_task_failure(context: dict[str, Any]) -> None:
    """on_failure_callback: an audit event for the failed task; the run is marked failed."""
    _record_task_event(context, "task_failed", close_run=True)


def record_task_retry(context: dict[str, Any]) -> None:
    """on_retry_callback: an audit event for the attempt that failed; Airflow retries it."""
    _record_task_event(context, "task_retried", close_run=False)


def _record_task_event(context: dict[str, Any], event: str, close_run: bool) -> None:
    """Never raises: a callback that fails would hide the task's own error."""
    try:
        task_instance = context["task_instance"]
        ctx = open_context(context["run_id"])
        ctx.audit(
            task_instance.task_id,
            event,
            error=repr(context.get("exception")),
            try_number=task_instance.try_number,
            map_index=getattr(task_instance, "map_index", -1),
        )
        if close_run and ctx.metadata.get_run(ctx.run_id):
            ctx.metadata.finish_run(ctx.run_id, "failed", {})
    except Exception:
        log.exception("could not record %s for run %s", event, normalise_run_id(context.get("run_id", "?")))
