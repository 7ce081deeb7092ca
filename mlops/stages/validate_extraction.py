"""validate_extraction: the Great Expectations gate on the extracted table.

One GX checkpoint for the whole run (importing GX costs seconds; validating is cheap), against
the suite file in ``config/expectations/`` and the critical expectations generated from
``REQUIRED_FIELDS`` (completeness per document type, mean field confidence, known-type share).
A failed critical expectation makes the run FAILED; otherwise the score maps to PASSED / WARNING /
FAILED by the configured thresholds. Rows that break expectations are traced to their documents.

Every expectation's result is published as ``reports/<run_id>/validation.html`` (the summary's
``data_docs``): a page of our own that works offline. GX's Data Docs site loads its styling
from public CDNs, so it is built only when ``quality.data_docs`` asks for it, under
``reports/<run_id>/data_docs/`` (``gx_data_docs``).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from mlops.quality.expectations import GateThresholds, validate_extractions
from mlops.reporting import render_validation_html
from mlops.run_data import extractions, file_names
from mlops.stages import StageContext

STAGE = "validate_extraction"
log = logging.getLogger(__name__)


def run(ctx: StageContext) -> dict[str, Any]:
    settings = ctx.settings.quality
    thresholds = GateThresholds(
        passed=settings.passed_threshold,
        warning=settings.warning_threshold,
        min_field_completeness=settings.min_field_completeness,
        min_mean_confidence=settings.min_mean_confidence,
        min_known_doc_type_share=settings.min_known_doc_type_share,
    )
    with tempfile.TemporaryDirectory(prefix="data-docs-") as docs_dir:
        result = validate_extractions(
            extractions(ctx),
            settings.suite_file,
            thresholds=thresholds,
            data_docs_dir=Path(docs_dir) if settings.data_docs else None,
            as_of=ctx.run_date,
        )
        gx_data_docs = publish_directory(ctx, Path(docs_dir), "data_docs") if result.data_docs_index else None
    summary = result.summary()
    files = file_names(ctx)
    page = f"{ctx.settings.prefixes.reports}/{ctx.run_id}/validation.html"
    ctx.store.put_bytes(page, render_validation_html(ctx.run_id, summary, files).encode(), content_type="text/html")
    data_docs = ctx.store.uri(page)
    ctx.catalog.save_json(f"{STAGE}/result", summary | {"data_docs": data_docs, "gx_data_docs": gx_data_docs})
    for sha256, broken in result.failing_rows.items():
        ctx.audit(STAGE, "expectations_failed", sha256=sha256, expectations=broken)
    broken = sorted((o for o in result.expectations if not o.success), key=lambda o: -(o.unexpected_count or 0))
    if broken:
        log.warning("quality gate %s (score %.2f): %d expectations broken, most rows first: %s", result.status,
                    result.score, len(broken), "; ".join(f"{o.label}: {o.unexpected_count or 0} rows" for o in broken[:5]))  # fmt: skip
    return {"score": result.score, "status": str(result.status), "rows": result.rows, "data_docs": data_docs,
            "critical_failures": result.critical_failures}


def publish_directory(ctx: StageContext, directory: Path, name: str) -> str:
    """Upload a local directory tree under ``reports/<run_id>/<name>/``; returns its index URI."""
    prefix = f"{ctx.settings.prefixes.reports}/{ctx.run_id}/{name}"
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            ctx.store.put_file(f"{prefix}/{path.relative_to(directory).as_posix()}", path)
    return ctx.store.uri(f"{prefix}/index.html")
