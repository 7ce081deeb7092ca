"""Run the whole chain in one process (the CLI's ``run``); Airflow runs the same stages as tasks."""

from __future__ import annotations

import json
import logging
from typing import Any

from mlops.config import Settings
from mlops.errors import describe
from mlops.stages import STAGE_NAMES, open_context, run_stage
from mlops.stages.generate_reports import publish_failure

log = logging.getLogger(__name__)


def run_all(run_id: str, settings: Settings | None = None, **options: Any) -> dict[str, Any]:
    """Every stage in order; returns run_summary.json. A failing stage re-raises its error after
    the run's summary and report are published with status failed and that error."""
    ctx = open_context(run_id, settings, **options)
    for name in STAGE_NAMES:
        try:
            outcome = run_stage(name, ctx.run_id, ctx=ctx)
        except Exception as error:
            try:
                publish_failure(ctx, name, describe(error))
            except Exception:
                log.exception("could not publish the failed run %s", ctx.run_id)
            raise
    summary_key = f"{ctx.settings.prefixes.reports}/{ctx.run_id}/run_summary.json"
    return json.loads(ctx.store.get_bytes(summary_key)) | {"report": outcome["report"]}
