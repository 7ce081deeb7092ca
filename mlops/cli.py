"""Command line: ``python -m mlops`` (or ``mlops``).

Exit codes scripts can rely on: 0 success, 1 unexpected error (a bug: see the traceback),
2 usage error, 3 configuration error, 4 infrastructure error (object store, database,
a full disk or a permission denied, missing system program: retry or fix the service), 5 the run finished but its verdict fails it
(``run``: FAILED, or WARNING too, per the setting ``gate.fail_run_on``; its report is written),
6 another run is live on the store (its id is in the message; or this run cannot go on because
a later one took its documents over), 7 the run was interrupted (SIGTERM, Ctrl-C) and closed as
such: its unfinished documents go to the next run.
"""

from __future__ import annotations

import errno
import gc
import json
import logging
import os
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

EXIT_CONFIG = 3
EXIT_INFRASTRUCTURE = 4
EXIT_VERDICT = 5
EXIT_BUSY = 6
EXIT_INTERRUPTED = 7
# The disk or the permissions under data_dir, not a bug: an infrastructure error naming the path.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})


def _fail(code: int, message: str) -> None:
    from mlops.errors import redact

    click.secho(f"error: {redact(message)}", fg="red", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns the platform's own exceptions into clear messages and stable exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        from mlops.errors import (
            ConfigError,
            DatasetNotFound,
            DependencyMissing,
            ObjectStoreError,
            RunBusy,
            RunInterrupted,
        )

        try:
            return super().invoke(ctx)
        except RunInterrupted as error:
            _fail(EXIT_INTERRUPTED, str(error))
        except RunBusy as error:
            _fail(EXIT_BUSY, str(error))
        except ConfigError as error:
            _fail(EXIT_CONFIG, str(error))
        except (ObjectStoreError, DependencyMissing, DatasetNotFound) as error:
            _fail(EXIT_INFRASTRUCTURE, str(error))
        except OSError as error:
            if error.errno not in STORAGE_ERRNOS:
                raise
            _fail(EXIT_INFRASTRUCTURE, f"{error.strerror} at {error.filename or 'an unnamed path'}: "
                  "free space or fix the permissions there, then run again (nothing is lost: the run resumes)")  # fmt: skip
        except Exception as error:
            from sqlalchemy.exc import InterfaceError, OperationalError, TimeoutError

            if isinstance(error, OperationalError | InterfaceError | TimeoutError):
                _fail(EXIT_INFRASTRUCTURE, f"metadata database unavailable (after retry.max_attempts tries): "
                      f"{getattr(error, 'orig', None) or error}")
            raise


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--params",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML overlay on config/pipeline_config.yaml (DVC passes params.yaml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(params: str | None, verbose: bool) -> None:
    """Loan-document platform: turns student-loan PDFs and scans into validated data.

    \b
    Typical use:
      python -m mlops sample-data --count 40     # synthetic documents into the landing area
      python -m mlops run                         # run every stage for a new run id
      python -m mlops stage validate_documents --run-id RUN   # rerun one stage

    Settings come from MLOPS_* environment variables, .env and config/pipeline_config.yaml
    (see .env.example).
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if params:
        os.environ["MLOPS_PARAMS_FILE"] = params


@cli.command("sample-data")
@click.option("--out", help="Target directory or s3://bucket/prefix. Default: the configured landing area.")
@click.option("--count", default=40, show_default=True, help="Number of good documents.")
@click.option("--seed", default=7, show_default=True, help="Same seed, same bytes.")
@click.option("--no-bad", is_flag=True, help="Leave out the corrupt, encrypted, oversized... files.")
def sample_data(out: str | None, count: int, seed: int, no_bad: bool) -> None:
    """Generate synthetic student-loan documents with a ground-truth labels.jsonl."""
    from mlops.config import get_settings
    from mlops.io.objects import open_target
    from mlops.sample_data import generate_corpus

    settings = get_settings()
    store, prefix = open_target(out, settings)
    rows = generate_corpus(
        count,
        seed,
        lambda name, data: store.put_bytes(f"{prefix}/{name}" if prefix else name, data),
        max_file_bytes=settings.limits.max_file_bytes,
        include_bad=not no_bad,
    )
    click.echo(f"wrote {len(rows)} files and labels.jsonl to {store.uri(prefix)}")


@cli.command("train-extractor")
@click.option("--if-missing", is_flag=True, help="Do nothing when the configured model version exists and fits this code.")
def train_extractor(if_missing: bool) -> None:
    """Train the field ranker and document-type model (settings: train.*, extract.model_version)
    and print their accuracy on layout families and wordings held out of training."""
    from mlops.config import get_settings
    from mlops.errors import ConfigError
    from mlops.extraction.trained_models import load_models
    from mlops.extraction.training import held_out_table, train_extractor

    settings = get_settings()
    if if_missing and settings.extractor_model_file.is_file():
        try:
            load_models(str(settings.extractor_model_file))
            click.echo(f"model: {settings.extractor_model_file} (exists)", err=True)
            return
        except ConfigError as error:
            click.echo(f"{error}: training it again", err=True)
    metrics = train_extractor(settings)
    click.echo(held_out_table(metrics))
    click.echo(f"model: {settings.extractor_model_file}", err=True)


@cli.command("evaluate-extractor")
def evaluate_extractor() -> None:
    """Print the held-out accuracy table of the configured extractor model."""
    from mlops.config import get_settings
    from mlops.errors import ConfigError
    from mlops.extraction.trained_models import BUILD_HINT
    from mlops.extraction.training import METRICS_FILENAME, held_out_table

    settings = get_settings()
    metrics_file = settings.extractor_model_file.parent / METRICS_FILENAME
    if not metrics_file.is_file():
        raise ConfigError(f"extract.model_version: no metrics at {metrics_file}; {BUILD_HINT}")
    click.echo(held_out_table(json.loads(metrics_file.read_text())))


@cli.command("run")
@click.option("--run-id", help="Default: cli__<UTC time>_<random suffix>.")
@click.option("--reprocess", is_flag=True, help="Process documents again even if this pipeline version did.")
@click.option("--max-documents", type=click.IntRange(min=1), help="Take at most this many new landing objects.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole run summary after the verdict.")
def run_pipeline(run_id: str | None, reprocess: bool, max_documents: int | None, as_json: bool) -> None:
    """Run every stage in order for one run; print its verdict (first line), its counts and
    where its report is (--json: the whole summary).

    Exits 5 when the verdict fails the run (gate.fail_run_on, default: a FAILED verdict), so cron
    and CI see it; MLOPS_GATE__FAIL_RUN_ON=never only reports it. One run at a time per store:
    exits 6 naming the live run (lease.wait_seconds: wait for it first); SIGTERM stops the run
    as interrupted, exit 7.
    """
    from mlops.config import get_settings
    from mlops.pipeline import run_all, stop_on_signals
    from mlops.run_summary import fails_run, verdict_line

    run_id = run_id or default_run_id()
    with stop_on_signals():
        summary = run_all(run_id, reprocess=reprocess, max_documents=max_documents)
    click.echo(verdict_line(summary))
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    click.echo(_counts_line(summary["documents"]))
    click.echo(f"report:  {summary['report']}")
    if fails_run(summary["status"], get_settings().gate.fail_run_on):
        sys.exit(EXIT_VERDICT)


def default_run_id() -> str:
    """``cli__<UTC time>_<6 hex digits>``: two launches in the same second get different ids."""
    return f"{datetime.now(UTC):cli__%Y%m%dT%H%M%SZ}_{secrets.token_hex(3)}"


def _stage_names() -> tuple[str, ...]:
    from mlops.stages import STAGE_NAMES

    return STAGE_NAMES


@cli.command("stage")
@click.argument("name", type=click.Choice(_stage_names()))
@click.option("--run-id", required=True, help="The run whose datasets the stage reads and writes.")
@click.option("--batch", type=int, help="Only this batch of documents (mapped Airflow tasks).")
@click.option("--reprocess", is_flag=True, help="Process documents again even if this pipeline version did.")
def stage(name: str, run_id: str, batch: int | None, reprocess: bool) -> None:
    """Run one stage NAME (an Airflow task id; listed in pipeline order) for one run. A run
    starts with acquire_documents; the other stages need a run that did."""
    from mlops.pipeline import stop_on_signals
    from mlops.stages import STAGE_NAMES, run_stage

    if name != STAGE_NAMES[0]:
        _known_run(run_id)
    with stop_on_signals():
        summary = run_stage(name, run_id, batch=batch, reprocess=reprocess)
    click.echo(json.dumps(summary, indent=2, default=str))


@cli.command("summary")
@click.option("--run-id", default="latest", show_default=True, help="Which run's report.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole run_summary.json after the verdict.")
def summary(run_id: str, as_json: bool) -> None:
    """Print a run's verdict (first line), its document counts and where its report is."""
    from mlops.config import get_settings
    from mlops.errors import DatasetNotFound, ObjectNotFound
    from mlops.io.objects import open_object_store
    from mlops.run_summary import verdict_line

    settings = get_settings()
    store = open_object_store(settings)
    folder = f"{settings.prefixes.reports}/{run_id}"
    try:
        body = json.loads(store.get_bytes(f"{folder}/run_summary.json"))
    except ObjectNotFound:
        if run_id == "latest":
            raise DatasetNotFound(f"no report at {store.uri(folder)}: run the pipeline first") from None
        _known_run(run_id)  # exits 2 listing the runs there are
        raise DatasetNotFound(f"run {run_id!r} has no report at {store.uri(folder)} yet") from None
    click.echo(verdict_line(body))
    if as_json:
        click.echo(json.dumps(body, indent=2))
    click.echo(_counts_line(body["documents"]))
    click.echo(f"report:  {store.uri(f'{folder}/report.html')}")
    click.echo(f"summary: {store.uri(f'{folder}/run_summary.json')}")


@cli.command("dvc-remote")
@click.option("--name", default="storage", show_default=True, help="The DVC remote to configure.")
def dvc_remote(name: str) -> None:
    """Point DVC's remote at the platform's bucket (s3://<bucket>/dvc) with the object-store
    settings. Endpoint and credentials go to .dvc/config.local, which git ignores."""
    from dvc.config import Config

    from mlops.config import get_settings
    from mlops.errors import ConfigError

    store = get_settings().object_store
    if store.backend != "s3":
        raise ConfigError("object_store.backend is 'local': set MLOPS_OBJECT_STORE__BACKEND=s3 and its endpoint first")
    options = {
        "url": f"s3://{store.bucket}/dvc",
        "endpointurl": store.endpoint_url,
        "region": store.region,
        "access_key_id": store.access_key_id.get_secret_value() if store.access_key_id else None,
        "secret_access_key": store.secret_access_key.get_secret_value() if store.secret_access_key else None,
    }
    with Config.from_cwd().edit("local") as local:  # one write, validated by DVC's own schema
        local["remote"].setdefault(name, {}).update({option: value for option, value in options.items() if value})
    click.echo(f"DVC remote {name!r} -> {options['url']} at {store.endpoint_url or 'AWS'}")


@cli.command("audit-export")
@click.option("--run-id", help="Only this run's events.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Default: standard output.")
def audit_export(run_id: str | None, out: Path | None) -> None:
    """Export the append-only audit log as JSON Lines."""
    from mlops.config import get_settings
    from mlops.io.metadata import MetadataStore

    metadata = MetadataStore.from_settings(get_settings())
    metadata.migrate()
    if run_id is not None:
        _known_run(run_id)
    if out is None:
        metadata.export_audit_jsonl(sys.stdout, run_id=run_id)
        return
    with out.open("w", encoding="utf-8") as stream:
        count = metadata.export_audit_jsonl(stream, run_id=run_id)
    click.echo(f"{count} events written to {out}", err=True)


@cli.command("runs")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many, newest first.")
def runs(limit: int) -> None:
    """Recent runs, newest first: id, verdict or outcome, when, and the document counts."""
    from mlops.config import get_settings
    from mlops.io.metadata import MetadataStore

    metadata = MetadataStore.from_settings(get_settings())
    metadata.migrate()
    rows = metadata.runs()[::-1][:limit]
    if not rows:
        click.echo("no runs yet: `python -m mlops run` or trigger the DAG")
    for row in rows:
        counts = row["counts"] or {}
        state = row["verdict"] or row["outcome"] or row["status"]
        finished = f"{row['finished_at']:%Y-%m-%d %H:%M}" if row["finished_at"] else "-"
        click.echo(f"{row['run_id']}  {state:<11}  started {row['started_at']:%Y-%m-%d %H:%M}  finished {finished}  "
                   f"new {counts.get('new', '-')}, accepted {counts.get('accepted', '-')}, "
                   f"quarantined {counts.get('quarantined', '-')}")  # fmt: skip


@cli.command("dashboard")
@click.option("--runs", type=click.IntRange(min=1), default=20, show_default=True, help="The last N runs.")
def dashboard(runs: int) -> None:
    """Regenerate reports/dashboard.html: the last N runs' verdicts, documents, gate scores,
    accuracy, missing rates per field, anomalies by detector, stage durations and drift, each
    linking to its report. generate_reports regenerates it after every run too."""
    from mlops.config import get_settings
    from mlops.io.metadata import MetadataStore
    from mlops.io.objects import open_object_store
    from mlops.monitoring.dashboard import write_dashboard

    settings = get_settings()
    metadata = MetadataStore.from_settings(settings)
    metadata.migrate()
    written = write_dashboard(open_object_store(settings), metadata, settings, runs)
    click.echo(written["headline"])
    click.echo(f"dashboard:  {written['dashboard']}")


@cli.command("drift")
@click.option("--run-id", help="Default: the newest run with field statistics.")
@click.option("--baseline-runs", type=click.IntRange(min=1), help="Compare with this many good runs (default: monitoring.baseline_runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole drift report after the verdict.")
def drift(run_id: str | None, baseline_runs: int | None, as_json: bool) -> None:
    """Drift of a run's field statistics against the last good runs before it: the verdict first
    (DRIFT, NO DRIFT or NOT ENOUGH HISTORY), then the ten most drifted fields with their worst
    statistic, its value and threshold. Writes every check to reports/<run_id>/drift.json."""
    from mlops.config import get_settings
    from mlops.io.metadata import MetadataStore
    from mlops.io.objects import open_object_store
    from mlops.monitoring.drift import drift_for_run, publish_drift

    settings = get_settings()
    metadata = MetadataStore.from_settings(settings)
    metadata.migrate()
    if run_id is None:
        with_statistics = metadata.runs_with_field_statistics()
        newest = [row["run_id"] for row in metadata.runs() if row["run_id"] in with_statistics]
        if not newest:
            _fail(2, "no run has field statistics yet: they are recorded by store_results (`python -m mlops run`)")
        run_id = newest[-1]
    _known_run(run_id)
    if not metadata.field_statistics([run_id]):
        _fail(2, f"run {run_id!r} has no field statistics: `python -m mlops stage store_results --run-id {run_id}` "
              "records them")  # fmt: skip
    report = drift_for_run(metadata, run_id, settings.monitoring, baseline_runs)
    store = open_object_store(settings)
    key = publish_drift(store, settings.prefixes.reports, report)
    click.echo(report.headline())
    if as_json:
        click.echo(report.to_json())
    else:
        for check in report.worst_per_field()[:10]:
            click.echo(f"  {check.line()}")
    click.echo(f"report:  {store.uri(key)}")


@cli.command("suggest-expectations")
@click.option("--from-runs", "run_ids", multiple=True, metavar="RUN_ID[,RUN_ID...]", help="Profile these runs.")
@click.option("--last", type=click.IntRange(min=1), help="Profile the last N good runs (monitoring.baseline_verdicts).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Default: <suite file>.suggested.json beside the current suite.")  # fmt: skip
def suggest_expectations(run_ids: tuple[str, ...], last: int | None, out: Path | None) -> None:
    """Propose an expectation suite from good runs' extractions (ranges from robust quantiles,
    value sets, null-rate bounds, formats) and print how it differs from the current suite.
    Nothing is applied: review the file, then copy it over the suite file to use it."""
    import pandas as pd

    from mlops.config import get_settings
    from mlops.io.metadata import MetadataStore
    from mlops.monitoring.drift import select_baseline
    from mlops.quality.suggest import suggest_suite, suite_diff

    if bool(run_ids) == bool(last):
        _fail(2, "give either --from-runs RUN_ID[,RUN_ID...] or --last N")
    settings = get_settings()
    metadata = MetadataStore.from_settings(settings)
    metadata.migrate()
    if last:
        with_statistics = metadata.runs_with_field_statistics()
        chosen = select_baseline(metadata.runs(), None, with_statistics, settings.monitoring, last)
        if not chosen:
            _fail(2, f"no completed run with verdict {' or '.join(settings.monitoring.baseline_verdicts)} has "
                  "extractions yet: name runs with --from-runs")  # fmt: skip
    else:
        chosen = [run_id.strip() for value in run_ids for run_id in value.split(",") if run_id.strip()]
        for run_id in chosen:
            _known_run(run_id)
    frames = [pd.DataFrame(metadata.extractions(run_id)).drop(columns=["run_id", "validation_pass"], errors="ignore")
              for run_id in chosen]  # fmt: skip
    if not any(len(frame) for frame in frames):
        _fail(2, f"runs {', '.join(chosen)} have no stored extractions to profile")
    current_file = settings.quality.suite_file
    current = json.loads(current_file.read_text(encoding="utf-8"))
    proposed = suggest_suite(frames, name=current.get("name", "extractions"), run_ids=chosen,
                             categorical_fields=settings.monitoring.categorical_fields)  # fmt: skip
    out = out or current_file.with_name(f"{current_file.stem}.suggested.json")
    out.write_text(json.dumps(proposed, indent=2) + "\n", encoding="utf-8")
    rows = proposed["meta"]["suggested_from"]["rows"]
    click.echo(f"proposed suite: {out} ({len(proposed['expectations'])} expectations from {len(chosen)} runs, "
               f"{rows} rows); nothing is applied: review it, then copy it over {current_file} to use it")  # fmt: skip
    click.echo(f"changes against {current_file}:")
    for line in suite_diff(current, proposed):
        click.echo(f"  {line}")


@cli.command("monitor")
@click.option("--json", "as_json", is_flag=True, help="Print the whole monitoring report after the verdict.")
def monitor(as_json: bool) -> None:
    """The data_quality_monitoring DAG's checks, now: freshness of the landing area and of
    processed results, the newest completed run's drift, the anomaly-rate trend. Prints the verdict
    first (OK, or ALERT with the rules that fired), sends those alerts (once per rule per
    monitoring.alert_window_hours) and writes reports/monitoring/<time>.json and latest.json.
    Exits 5 on ALERT."""
    from mlops.monitoring.checks import ALERT, monitor

    report = monitor()
    click.echo(report["verdict_line"])
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    click.echo(f"report:  {report['report']}")
    if report["verdict"] == ALERT:
        sys.exit(EXIT_VERDICT)


@cli.command("bias-window")
@click.option("--runs", type=click.IntRange(min=1), help="The last N completed runs (default: bias.window_runs, or bias.window_days).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole bias report after the verdict.")
def bias_window(runs: int | None, as_json: bool) -> None:
    """The bias_detection_pipeline DAG's assessment, now: fairlearn MetricFrame over the pooled
    documents of a window of runs by document type, servicer, format, page bucket and scan
    quality, with bootstrap intervals. Prints the verdict first, then each flagged slice's
    mitigation; writes reports/bias/<date>/bias_report.html and .json."""
    from mlops.monitoring.bias_window import run_bias_window

    report = run_bias_window(datetime.now(UTC), runs)
    click.echo(report["headline"])
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    for flag in report["flagged"]:
        click.echo(f"  {flag['dimension']}={flag['slice']} ({flag['metric']}): {flag['mitigation']}")
    click.echo(f"report:  {report['report']}")


def _counts_line(documents: dict[str, int]) -> str:
    return (
        f"documents: seen {documents['seen']}, new {documents['new']}, skipped {documents['skipped']}, "
        f"accepted {documents['accepted']}, quarantined {documents['quarantined']}, duplicates {documents['duplicates']}"
    )


def _known_run(run_id: str) -> None:
    """Exit 2, listing the most recent runs, when the metadata store has no run ``run_id``."""
    from mlops.config import get_settings
    from mlops.io.metadata import MetadataStore

    metadata = MetadataStore.from_settings(get_settings())
    metadata.migrate()
    if metadata.get_run(run_id) is None:
        recent = [row["run_id"] for row in metadata.runs()[::-1][:10]]
        known = f"recent runs: {', '.join(recent)}" if recent else "there are no runs yet"
        _fail(2, f"no run {run_id!r} in the metadata store ({known}; `python -m mlops runs` lists them)")


def main(argv: list[str] | None = None) -> int:
    """The process entry point (``python -m mlops``, the ``mlops`` script): returns the exit code.

    The process exits right after: its objects are frozen out of the garbage collector, whose
    passes over every imported module's objects at interpreter shutdown took ~1 s once Great
    Expectations was loaded. Exit handlers still run (logs flushed, temporary directories removed);
    every output is already written and committed, as it is when a run is killed outright.
    """
    try:
        cli.main(args=argv, prog_name="python -m mlops", standalone_mode=True)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        gc.freeze()
    return 0
