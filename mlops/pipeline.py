"""Run the whole chain in one process (the CLI's ``run``); Airflow runs the same stages as tasks."""

from __future__ import annotations

from typing import Any

from mlops.config import Settings
from mlops.stages import STAGE_NAMES, open_context, run_stage


def run_counts(summaries: dict[str, dict[str, Any]]) -> dict[str, int]:
    """The run's document counts: seen = new + skipped; new = accepted + quarantined + duplicates."""
    acquired = summaries.get("acquire_documents", {})
    validated = summaries.get("validate_documents", {})
    preprocessed = summaries.get("preprocess_documents", {})
    quarantined = validated.get("quarantined", 0) + preprocessed.get("quarantined", 0)
    return {
        "seen": acquired.get("seen", 0),
        "new": acquired.get("new", 0),
        "skipped": acquired.get("skipped", 0),
        "duplicates": acquired.get("duplicates", 0),
        "quarantined": quarantined,
        "accepted": validated.get("accepted", 0) - preprocessed.get("quarantined", 0),
    }


def run_all(run_id: str, settings: Settings | None = None, reprocess: bool = False) -> dict[str, Any]:
    ctx = open_context(run_id, settings, reprocess=reprocess)
    summaries: dict[str, dict[str, Any]] = {}
    try:
        for name in STAGE_NAMES:
            summaries[name] = run_stage(name, run_id, ctx=ctx)
    except Exception:
        ctx.metadata.finish_run(run_id, "failed", run_counts(summaries))
        raise
    counts = run_counts(summaries)
    ctx.metadata.finish_run(run_id, "success", counts)
    return {"run_id": run_id, "documents": counts, "stages": summaries, "outputs": ctx.store.uri(ctx.catalog.root)}
