"""The pipeline's stages. Each module is named after its Airflow task id and exposes
``run(ctx, batch=None) -> dict``: a small summary (counts, keys) fit for XCom and the CLI.

Runners (the DAG, dvc.yaml, the CLI) only call :func:`run_stage`.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from mlops.config import Settings, get_settings
from mlops.io.catalog import Catalog
from mlops.io.metadata import MetadataStore
from mlops.io.objects import ObjectStore, open_object_store

STAGE_NAMES: tuple[str, ...] = (
    "acquire_documents",
    "validate_documents",
    "preprocess_documents",
)

log = logging.getLogger("mlops.stages")


@dataclass
class StageContext:
    """Everything a stage may touch: no stage reads the environment or global state."""

    run_id: str
    settings: Settings
    store: ObjectStore
    metadata: MetadataStore
    reprocess: bool = False

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog(self.store, self.settings.prefixes.runs, self.run_id)

    def audit(self, stage: str, event: str, sha256: str | None = None, **details: Any) -> None:
        self.metadata.record_event(self.run_id, stage, event, sha256=sha256, details=details or None)


def open_context(run_id: str, settings: Settings | None = None, reprocess: bool = False) -> StageContext:
    settings = settings or get_settings()
    metadata = MetadataStore.from_settings(settings)
    metadata.migrate()
    return StageContext(
        run_id=run_id,
        settings=settings,
        store=open_object_store(settings),
        metadata=metadata,
        reprocess=reprocess,
    )


def run_stage(
    name: str,
    run_id: str,
    *,
    batch: int | None = None,
    settings: Settings | None = None,
    reprocess: bool = False,
    ctx: StageContext | None = None,
) -> dict[str, Any]:
    """Run one stage for one run; records its duration in the audit log and returns its summary."""
    if name not in STAGE_NAMES:
        raise ValueError(f"unknown stage {name!r}; stages are: {', '.join(STAGE_NAMES)}")
    module = importlib.import_module(f"mlops.stages.{name}")
    ctx = ctx or open_context(run_id, settings, reprocess=reprocess)
    if name == STAGE_NAMES[0]:
        ctx.metadata.start_run(run_id, ctx.settings.fingerprint(), ctx.settings.pipeline_version)
    started = time.monotonic()
    summary = module.run(ctx, batch=batch) if batch is not None else module.run(ctx)
    seconds = round(time.monotonic() - started, 3)
    ctx.audit(name, "stage_finished", seconds=seconds, batch=batch, summary=summary)
    log.info("%s finished in %.1f s: %s", name, seconds, summary)
    return summary
