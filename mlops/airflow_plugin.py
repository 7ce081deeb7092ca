"""The run's evidence one click from the Airflow UI: a **Report** tab on every DAG run, and
**Latest report** and the cross-run **Dashboard** in the navigation, served by the Airflow API
server itself from the platform's object store (the local directory or MinIO/S3), behind
Airflow's own login.

Registered through the ``airflow.plugins`` entry point (pyproject.toml), so every Airflow
installed with the platform (docker-compose.yml, the native stack, ``airflow standalone``) has it.
The report's own links (validation page, shared plotly asset) are relative and resolve here too.
"""

from __future__ import annotations

import mimetypes
from typing import Annotated, ClassVar

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Path
from fastapi.responses import HTMLResponse, Response

from mlops.config import get_settings
from mlops.errors import ObjectNotFound
from mlops.io.objects import open_object_store
from mlops.stages import normalise_run_id

URL_PREFIX = "/mlops"
DAG_ID = "document_processing_pipeline"
REPORT_PAGE = "report.html"
DASHBOARD = "dashboard.html"  # mlops.monitoring.dashboard.DASHBOARD, not imported: plotly is heavy
NO_CACHE = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

app = FastAPI(title="Loan document reports", docs_url=None, redoc_url=None, openapi_url=None)
CanReadRuns = Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID))


@app.get(f"/reports/{DASHBOARD}", dependencies=[CanReadRuns])
def dashboard() -> Response:
    """The cross-run dashboard ``reports/dashboard.html``; its links to the runs' reports and to the
    shared plotly asset are relative, so they resolve through :func:`report_file`."""
    settings = get_settings()
    try:
        body = open_object_store(settings).get_bytes(f"{settings.prefixes.reports}/{DASHBOARD}")
    except ObjectNotFound:
        return HTMLResponse(
            "<p>No dashboard yet. Every run's generate_reports task, the data_quality_monitoring DAG "
            "and <code>python -m mlops dashboard</code> write it.</p>",
            status_code=404,
        )
    return Response(body, media_type="text/html", headers=NO_CACHE)


@app.get("/reports/{run_id}/{name:path}", dependencies=[CanReadRuns])
def report_file(
    run_id: Annotated[str, Path(description="an Airflow run id, a platform run id, or 'latest'")],
    name: Annotated[str, Path(description="a file of the run's reports, e.g. report.html")],
) -> Response:
    """``reports/<run>/<name>`` from the object store; the run id as Airflow or the platform spells it."""
    parts = name.split("/")
    if any(part in ("", ".", "..") or "\\" in part for part in parts):
        return HTMLResponse("<p>No such report file.</p>", status_code=404)
    folder = normalise_run_id(run_id)
    settings = get_settings()
    try:
        body = open_object_store(settings).get_bytes(f"{settings.prefixes.reports}/{folder}/{name}")
    except ObjectNotFound:
        return HTMLResponse(
            f"<p>No {name} for run <code>{folder}</code> yet. A run's report is written by its "
            "generate_reports task, or when one of its tasks has failed after its retries.</p>",
            status_code=404,
        )
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(body, media_type=media_type, headers=NO_CACHE)


def report_url(base_url: str, run_id: str, name: str = REPORT_PAGE) -> str:
    """Where a browser opens a run's report through this plugin, under Airflow's ``api.base_url``."""
    return f"{base_url.rstrip('/')}{URL_PREFIX}/reports/{normalise_run_id(run_id)}/{name}"


class MlopsPlugin(AirflowPlugin):
    name = "loan_document_reports"
    fastapi_apps: ClassVar[list[dict]] = [{"app": app, "url_prefix": URL_PREFIX, "name": "Loan document reports"}]
    # hrefs without a leading slash resolve against the UI's base URL, so a path prefix still works
    external_views: ClassVar[list[dict]] = [
        {"name": "Report", "href": f"{URL_PREFIX.lstrip('/')}/reports/{{RUN_ID}}/{REPORT_PAGE}",
         "destination": "dag_run", "url_route": "report"},
        {"name": "Latest report", "href": f"{URL_PREFIX.lstrip('/')}/reports/latest/{REPORT_PAGE}",
         "destination": "nav", "category": "browse", "url_route": "latest-report"},
        {"name": "Dashboard", "href": f"{URL_PREFIX.lstrip('/')}/reports/{DASHBOARD}",
         "destination": "nav", "category": "browse", "url_route": "dashboard"},
    ]  # fmt: skip
