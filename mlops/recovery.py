"""A run taking over from runs that stopped without finishing (killed: ``abandoned`` by the next
run; SIGTERM: ``interrupted``): it cleans up their leftovers and reports what they decided.

Such a run cannot go on once a later run has started (:class:`mlops.errors.RunSuperseded`), so
its leftovers are garbage: :func:`clean_up_stopped_runs` (at the start of acquire_documents)
deletes its working datasets ``runs/<run_id>/``, its preprocess results and extractions of the
documents it never finished (its copies would otherwise stay in the near-duplicate history, and
the document would end with two extractions), and half-written temp objects. Each cleaned run
gets an audit event ``cleaned_up`` saying what went.

The documents it did finish (stored, quarantined, duplicates) stay claimed by it, so later runs
skip them, yet no report of its own shows them. :func:`taken_over` hands them to the next report
published: ``taken_over`` in run_summary.json, a sentence among the verdict's reasons, their
quarantined files in the report's table. An audit event ``reported`` on the stopped run names
that report, so later reports leave them out unless that report was never published.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from mlops.models import DocumentStatus, RunOutcome

if TYPE_CHECKING:
    from mlops.stages import StageContext

STOPPED = (RunOutcome.ABANDONED, RunOutcome.INTERRUPTED)
FINAL = (DocumentStatus.STORED, DocumentStatus.QUARANTINED)

log = logging.getLogger(__name__)


def stopped_runs(ctx: StageContext) -> list[dict[str, Any]]:
    """Runs that stopped without finishing before this run started, oldest first."""
    own = ctx.metadata.get_run(ctx.run_id)
    runs = [run for outcome in STOPPED for run in ctx.metadata.runs(outcome)]
    earlier = [
        run
        for run in runs
        if run["run_id"] != ctx.run_id and (own is None or run["started_at"] < own["started_at"])
    ]
    return sorted(earlier, key=lambda run: run["started_at"])


def clean_up_stopped_runs(ctx: StageContext, stage: str) -> None:
    cleaned = {event["run_id"] for event in ctx.metadata.events(event="cleaned_up")}
    dead = [run["run_id"] for run in stopped_runs(ctx) if run["run_id"] not in cleaned]
    if not dead:
        return
    quarantined = {doc["sha256"] for doc in ctx.metadata.documents(status=DocumentStatus.QUARANTINED)}
    finished = ctx.metadata.processed_set(ctx.settings.pipeline_version) | quarantined
    prefixes = ctx.settings.prefixes
    for run_id in dead:
        held = {record.sha256 for record in ctx.metadata.preprocess_results(run_id)}
        held |= {row["sha256"] for row in ctx.metadata.extractions(run_id)}
        rows = ctx.metadata.discard_results(run_id, held - finished)
        objects = ctx.store.delete_prefix(f"{prefixes.runs}/{run_id}")
        ctx.metadata.record_event(
            run_id, stage, "cleaned_up", details={"by_run": ctx.run_id, "objects": objects, **rows}
        )
        log.info("run %s took over from run %s: removed %d objects of runs/%s/ and its rows of unfinished "
                 "documents %s", ctx.run_id, run_id, objects, run_id, rows)  # fmt: skip
    # Nothing of this run writes yet: a temp object older than a heartbeat is a dead writer's.
    grace = ctx.settings.lease.heartbeat_seconds
    temp = [key for prefix in (prefixes.raw, prefixes.quarantine, prefixes.runs, prefixes.reports)
            for key in ctx.store.remove_temp_files(prefix, grace)]  # fmt: skip
    if temp:
        ctx.audit(stage, "temp_files_removed", keys=temp)


def taken_over(ctx: StageContext) -> list[dict[str, Any]]:
    """What each stopped run finished that no published report shows, for this run's report:
    run_id, outcome, counts of stored, quarantined and duplicates, and the quarantined files."""
    reports = ctx.settings.prefixes.reports
    reported_in: defaultdict[str, set[str]] = defaultdict(set)
    for event in ctx.metadata.events(event="reported"):
        reported_in[event["run_id"]].add(event["details"]["in_report_of"])

    def published(run_id: str) -> bool:
        return ctx.store.exists(f"{reports}/{run_id}/run_summary.json")

    taken = []
    for run in stopped_runs(ctx):
        run_id = run["run_id"]
        if published(run_id) or any(
            other != ctx.run_id and published(other) for other in reported_in[run_id]
        ):
            continue
        decided = _decided_by(ctx, run_id)
        if decided["stored"] or decided["quarantined"] or decided["duplicates"]:
            taken.append({"run_id": run_id, "outcome": run["outcome"], **decided})
    return taken


def _decided_by(ctx: StageContext, run_id: str) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    files = []
    for claim in ctx.metadata.landing_objects(run_id):
        document = ctx.metadata.get_document(claim["sha256"])
        if document is None or document["status"] not in FINAL:
            continue  # unfinished: whichever run finishes it reports it
        if claim["is_duplicate"]:
            counts["duplicates"] += 1
        elif document["status"] == DocumentStatus.STORED:
            counts["stored"] += 1
        else:
            counts["quarantined"] += 1
            files.append({"filename": document["original_filename"], "reason": document["quarantine_reason"],
                          "detail": document["quarantine_detail"]})  # fmt: skip
    return {"stored": counts["stored"], "quarantined": counts["quarantined"], "duplicates": counts["duplicates"],
            "quarantine_reasons": dict(Counter(row["reason"] for row in files)), "quarantined_files": files}  # fmt: skip


def taken_over_sentence(run: dict[str, Any]) -> str:
    return (f"taken over from run {run['run_id']} ({run['outcome']} before its report): {run['stored']} stored, "
            f"{run['quarantined']} quarantined, {run['duplicates']} duplicates, reported here")  # fmt: skip


def mark_reported(ctx: StageContext, stage: str, taken: list[dict[str, Any]]) -> None:
    """Before the report is written: if it never gets published, the next report takes them again."""
    for run in taken:
        ctx.metadata.record_event(run["run_id"], stage, "reported", details={"in_report_of": ctx.run_id})
