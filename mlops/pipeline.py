"""Run the whole chain in one process (the CLI's ``run``); Airflow runs the same stages as tasks."""

from __future__ import annotations

import json
from typing import Any

from mlops.config import Settings
from mlops.stages import STAGE_NAMES, open_context, run_stage


def run_all(run_id: str, settings: Settings | None = None, **options: Any) -> dict[str, Any]:
    """Every stage in order; returns run_summary.json. A failing stage marks the run failed."""
    ctx = open_context(run_id, settings, **options)
    try:
        for name in STAGE_NAMES:
            outcome = run_stage(name, ctx.run_id, ctx=ctx)
    except Exception:
        ctx.metadata.start_run(ctx.run_id, ctx.settings.fingerprint(), ctx.settings.pipeline_version)
        ctx.metadata.finish_run(ctx.run_id, "failed", {})
        raise
    summary_key = f"{ctx.settings.prefixes.reports}/{ctx.run_id}/run_summary.json"
    return json.loads(ctx.store.get_bytes(summary_key)) | {"report": outcome["report"]}
