"""The Airflow runner's side of a task: turn the task context into one ``run_stage`` call.

The DAG file only wires tasks; everything it needs from the platform is in this module,
imported inside task bodies so the DAG file itself parses fast.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import quote

import yaml
from dotenv import dotenv_values
from pydantic import BaseModel, ValidationError

from mlops.config import ENV_PREFIX, PrefixSettings, Settings, get_settings, project_dir, yaml_files
from mlops.errors import ConfigError, LeaseLost, RunInterrupted, RunSuperseded, describe
from mlops.lineage import report_to_airflow as report_lineage
from mlops.models import RunOutcome
from mlops.run_summary import fails_run, verdict_line
from mlops.stages import StageContext, normalise_run_id, open_context, run_stage, stop_on_signals

log = logging.getLogger("mlops.orchestration")
# The XCom a task returns is its summary, except where a mapped task expands over one of its values.
MAPPED_OVER = {"preprocess_documents": "batches"}
SETTING_AT_LINE_START = re.compile(r"^\s*([a-z_]+(?:\.[a-z_]+)*):", re.MULTILINE)


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
    logical_date = context.get("logical_date") or context["dag_run"].run_after
    with config_errors_fail_at_once(), runs_that_cannot_go_on_fail_at_once(), stop_on_signals():
        settings = task_settings(params)
        report_lineage(stage, settings, context["run_id"])
        summary = run_stage(
            stage,
            context["run_id"],
            batch=batch,
            settings=settings,
            reprocess=bool(params.get("reprocess", False)),
            max_documents=params.get("max_documents") or None,
            as_of=logical_date.date(),
            links=run_links(context),
        )
    return summary[MAPPED_OVER[stage]] if stage in MAPPED_OVER else summary


def run_links(context: dict[str, Any]) -> dict[str, str]:
    """Where a browser opens this run: its Airflow page and its report (the Report tab of
    :mod:`mlops.airflow_plugin`), under Airflow's ``api.base_url``; none when that is not set."""
    from airflow.configuration import conf

    base_url = (conf.get("api", "base_url", fallback=None) or "").rstrip("/")
    if not base_url:
        return {}
    from mlops.airflow_plugin import report_url

    dag_id, run_id = context["dag_run"].dag_id, context["run_id"]
    return {"airflow_run": f"{base_url}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}",
            "report": report_url(base_url, run_id)}  # fmt: skip


def enforce_verdict(outcome: dict[str, Any]) -> None:
    """The quality_gate task, after generate_reports has written the report: fail the Airflow run
    when its verdict is at least as bad as ``gate.fail_run_on`` (never retried: a verdict does not
    change on a retry), else mark the task skipped when the verdict is not a success, so a
    WARNING stands out in the grid while the run stays green."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    with config_errors_fail_at_once():
        fail_run_on = get_settings().gate.fail_run_on
    line = f"{verdict_line(outcome)} | report: {(outcome.get('links') or {}).get('report') or outcome['report']}"
    if fails_run(outcome["status"], fail_run_on):
        raise AirflowFailException(f"{line} (the run fails on a {fail_run_on} verdict: gate.fail_run_on)")
    if outcome["status"] != "success":
        raise AirflowSkipException(line)
    log.info(line)


def task_settings(params: dict[str, Any]) -> Settings:
    """The settings with the trigger form's landing prefix, if one was given."""
    settings = get_settings()
    prefix = params.get("landing_prefix")
    if not prefix:
        return settings
    try:
        prefixes = PrefixSettings.model_validate(settings.prefixes.model_dump() | {"landing": prefix})
    except ValidationError as error:
        problem = error.errors()[0]["msg"]
        raise ConfigError(f"trigger-form param landing_prefix={prefix!r}: {problem}. Fix: trigger again with "
                          "a prefix such as 'landing' or 'landing/2026-01'") from None  # fmt: skip
    return settings.model_copy(update={"prefixes": prefixes})


@contextmanager
def config_errors_fail_at_once() -> Iterator[None]:
    """A configuration error fails the task without retries (a retry reads the same values), with
    where each named setting's value came from."""
    try:
        yield
    except ConfigError as error:
        from airflow.sdk.exceptions import AirflowFailException

        sources = [f"{key} from {setting_source(key)}" for key in named_settings(str(error))]
        origin = f"\nvalues: {'; '.join(sources)}" if sources else ""
        raise AirflowFailException(f"configuration error (not retried): {error}{origin}") from error


@contextmanager
def runs_that_cannot_go_on_fail_at_once() -> Iterator[None]:
    """A run whose documents another run has taken over (its lease expired between two tasks), or
    one stopped by a signal (the task killed from the UI or its worker shut down: SIGINT, then
    SIGTERM) and closed as ``interrupted``, cannot go on: fail the task without retries. Another
    run being live is retried: the backoff is the wait."""
    try:
        yield
    except (RunSuperseded, LeaseLost, RunInterrupted) as error:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{error} (not retried)") from error


def named_settings(message: str) -> list[str]:
    """The Settings keys a ConfigError names at the start of its lines ("extract.model_version: ...")."""
    return [key for key in dict.fromkeys(SETTING_AT_LINE_START.findall(message)) if _is_setting(key)]


def _is_setting(dotted: str) -> bool:
    model: type[BaseModel] = Settings
    *sections, leaf = dotted.split(".")
    for section in sections:
        annotation = getattr(model.model_fields.get(section), "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return False
        model = annotation
    return leaf in model.model_fields


def setting_source(dotted: str) -> str:
    """Where a setting's value comes from, in the Settings' precedence: env, .env, YAML, default."""
    env_name = ENV_PREFIX + dotted.replace(".", "__").upper()
    if env_name in {name.upper() for name in os.environ}:
        return f"environment variable {env_name}"
    if env_name in {name.upper() for name in dotenv_values(project_dir() / ".env")}:
        return f"{env_name} in .env"
    for path in reversed(yaml_files()):
        node: Any = yaml.safe_load(path.read_text()) or {}
        for part in dotted.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is not KeyError:
            shown = path.relative_to(project_dir()) if path.is_relative_to(project_dir()) else path
            return f"`{dotted}` in {shown}"
    return "its default"


def record_task_failure(context: dict[str, Any]) -> None:
    """on_failure_callback: an audit event for the failed task, then the run's summary and report
    with the error and status failed (so reports/latest does not keep showing an older run);
    publishing sends the task_failed alert. If publishing fails, the alert still goes out."""
    from mlops.alerts import send_task_failure_alert
    from mlops.stages.generate_reports import publish_failure

    ctx = _record_task_event(context, "task_failed")
    if ctx is None:
        return
    task_id, message = context["task_instance"].task_id, describe(context.get("exception"))
    if (ctx.metadata.get_run(ctx.run_id) or {}).get("outcome") == RunOutcome.INTERRUPTED:
        log.error("task %s of run %s failed: %s; its documents go to the next run, which reports them",
                  task_id, ctx.run_id, message)  # fmt: skip
        send_task_failure_alert(ctx, task_id, message)
        return
    try:
        published = publish_failure(ctx, task_id, message)
        log.error("%s | report: %s", verdict_line(published), published["links"].get("report") or published["report"])
    except RunSuperseded as superseded:  # its documents are in the report of the run that took over
        log.error("task %s of run %s failed: %s; not published: %s", task_id, ctx.run_id, message, superseded)
        send_task_failure_alert(ctx, task_id, message)
    except Exception:
        log.exception("could not publish the failed run %s; closing it as failed", ctx.run_id)
        with suppress(Exception):
            ctx.metadata.finish_run(ctx.run_id, "failed", {}, outcome="error", reason=f"task {task_id} failed: {message}")
        send_task_failure_alert(ctx, task_id, message)


def record_task_retry(context: dict[str, Any]) -> None:
    """on_retry_callback: an audit event for the attempt that failed; Airflow retries it."""
    _record_task_event(context, "task_retried")


def _record_task_event(context: dict[str, Any], event: str) -> StageContext | None:
    """Never raises: a callback that fails would hide the task's own error."""
    try:
        try:
            settings = task_settings(context.get("params") or {})
        except ConfigError:
            settings = get_settings()  # the trigger form's value was the error: report where the config says
        task_instance = context["task_instance"]
        ctx = open_context(context["run_id"], settings, links=run_links(context))
        ctx.audit(
            task_instance.task_id,
            event,
            error=repr(context.get("exception")),
            try_number=task_instance.try_number,
            map_index=getattr(task_instance, "map_index", -1),
        )
        return ctx
    except Exception:
        log.exception("could not record %s for run %s", event, normalise_run_id(context.get("run_id", "?")))
        return None
