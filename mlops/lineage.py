"""The datasets each pipeline stage reads and writes, for OpenLineage.

One table, :data:`STAGE_DATASETS`, written once: object-store keys with ``{landing}``, ``{raw}``,
``{quarantine}``, ``{run}`` (``<runs prefix>/<run_id>``) and ``{reports}`` filled from the
settings, and metadata-database tables as ``table:<name>``. :func:`stage_datasets` turns them
into URIs named as the store names its objects (``ObjectStore.uri``): ``s3://<bucket>/<key>`` or
``file://<local_root>/<key>``; tables as ``postgres://host:port/<db>/<schema>/<table>`` (no
credentials; the schema of ``?options=-csearch_path=``, else ``public``) or, on SQLite, the
database file. The Airflow runner hands them to Airflow's hook lineage collector
(:func:`report_to_airflow`); the OpenLineage provider turns them into the task's input and output
datasets of its COMPLETE and FAIL events: namespace ``s3://<bucket>`` and name ``<key>``;
namespace ``file`` and name ``<local_root>/<key>``; namespace ``postgres://host:port`` and name
``<db>.<schema>.<table>``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy.engine import make_url

from mlops.config import Settings
from mlops.stages import normalise_run_id

log = logging.getLogger("mlops.lineage")
SEARCH_PATH = re.compile(r"search_path=([A-Za-z_][A-Za-z0-9_]*)")  # a URL's ?options=-csearch_path=<schema>
RUN = "{run}"
TABLE = "table:"
# stage -> (inputs, outputs). A folder key ("{raw}") stands for the objects under it.
STAGE_DATASETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "acquire_documents": (
        ("{landing}", "table:landing_objects", "table:processed_documents", "table:documents"),
        ("{raw}", f"{RUN}/acquire_documents/documents.parquet", f"{RUN}/acquire_documents/duplicates.parquet",
         f"{RUN}/acquire_documents/set_aside.parquet", "table:documents", "table:landing_objects"),
    ),
    "validate_documents": (
        ("{raw}", f"{RUN}/acquire_documents/documents.parquet"),
        (f"{RUN}/validate_documents/outcomes.parquet", "{quarantine}", "table:documents"),
    ),
    "preprocess_documents": (
        ("{raw}", f"{RUN}/acquire_documents/documents.parquet", f"{RUN}/validate_documents/outcomes.parquet",
         "table:preprocess_results"),
        (f"{RUN}/preprocess_documents/documents.parquet", f"{RUN}/preprocess_documents/pages.parquet",
         "{quarantine}", "table:preprocess_results", "table:documents"),
    ),
    "extract_data": (
        ("{raw}", f"{RUN}/preprocess_documents/documents.parquet"),
        (f"{RUN}/extract_data", "table:documents"),
    ),
    "validate_extraction": (
        (f"{RUN}/extract_data",),
        (f"{RUN}/validate_extraction/result.json", "{reports}/{run_id}/validation.html"),
    ),
    "detect_anomalies": (
        (f"{RUN}/extract_data", "table:extractions"),
        (f"{RUN}/detect_anomalies/findings.parquet", f"{RUN}/detect_anomalies/isolation_forest.joblib"),
    ),
    "check_bias": (
        (f"{RUN}/extract_data", f"{RUN}/validate_extraction/result.json",
         f"{RUN}/preprocess_documents/documents.parquet", "{labels}"),
        (f"{RUN}/check_bias/result.json", f"{RUN}/check_bias/documents.parquet", f"{RUN}/check_bias/accuracy.json"),
    ),
    "store_results": (
        (f"{RUN}/extract_data", f"{RUN}/validate_extraction/result.json", f"{RUN}/detect_anomalies/findings.parquet"),
        (f"{RUN}/store_results/extractions.parquet", "table:extractions", "table:findings", "table:run_metrics",
         "table:field_statistics", "table:processed_documents", "table:documents"),
    ),
    "generate_reports": (
        (f"{RUN}/validate_extraction/result.json", f"{RUN}/detect_anomalies/findings.parquet",
         f"{RUN}/check_bias/result.json", "table:pipeline_runs"),
        ("{reports}/{run_id}/report.html", "{reports}/{run_id}/run_summary.json", "{reports}/latest/report.html",
         "{reports}/latest/run_summary.json", "table:pipeline_runs"),
    ),
}  # fmt: skip


class StageDatasets(NamedTuple):
    inputs: list[str]
    outputs: list[str]


def stage_datasets(stage: str, settings: Settings, run_id: str) -> StageDatasets:
    """The URIs of the datasets ``stage`` reads and writes in run ``run_id`` (an Airflow run id or
    an already normalised one)."""
    run_id = normalise_run_id(run_id)
    inputs, outputs = STAGE_DATASETS[stage]
    return StageDatasets(_uris(inputs, settings, run_id), _uris(outputs, settings, run_id))


def _uris(entries: tuple[str, ...], settings: Settings, run_id: str) -> list[str]:
    prefixes = settings.prefixes
    fields = {"landing": prefixes.landing, "raw": prefixes.raw, "quarantine": prefixes.quarantine,
              "reports": prefixes.reports, "run": f"{prefixes.runs}/{run_id}", "run_id": run_id,
              "labels": settings.labels_key or ""}  # fmt: skip
    database = database_uri(settings) if any(entry.startswith(TABLE) for entry in entries) else ""
    uris = [
        table_uri(database, entry.removeprefix(TABLE)) if entry.startswith(TABLE) else object_uri(settings, key)
        for entry in entries
        if (key := entry.format(**fields))  # no labels_key: no labels dataset
    ]
    return list(dict.fromkeys(uris))


def object_uri(settings: Settings, key: str) -> str:
    """The URI ``ObjectStore.uri`` gives ``key``, without opening the store."""
    if settings.object_store.backend == "s3":
        return f"s3://{settings.object_store.bucket}/{key}"
    return (settings.local_root.resolve() / key).as_uri()


def database_uri(settings: Settings) -> str:
    """The metadata database: ``postgres://host:port/<db>/<schema>``, or the SQLite file's URI."""
    if conn_id := settings.metadata.airflow_conn_id:
        from mlops.io.metadata import _airflow_connection_url

        url = _airflow_connection_url(conn_id)
    else:
        url = make_url(settings.metadata_url)
    if url.get_backend_name() == "sqlite":
        return Path(url.database or "").resolve().as_uri()
    search_path = SEARCH_PATH.search(str(url.query.get("options", "")))
    schema = search_path[1] if search_path else "public"
    return f"postgres://{url.host or 'localhost'}:{url.port or 5432}/{url.database}/{schema}"


def table_uri(database: str, table: str) -> str:
    """A table of the metadata database; on SQLite the database file stands for its tables."""
    return database if database.startswith("file:") else f"{database}/{table}"


def report_to_airflow(stage: str, settings: Settings, run_id: str) -> None:
    """Hand the stage's datasets to Airflow's hook lineage collector, which the OpenLineage provider
    reads when the task ends. Does nothing (imports nothing heavy) when the provider is missing or
    disabled: without a transport configured it disables itself. Never fails the task."""
    try:
        from airflow.providers.openlineage import conf
    except ImportError:
        return
    if conf.is_disabled():
        return
    try:
        from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector
        from airflow.sdk import lineage

        # A fresh collector: where one process runs several tasks (`airflow dags test`), the
        # process-wide one still holds the datasets of the tasks before.
        lineage.get_hook_lineage_collector.cache_clear()
        collector: Any = get_hook_lineage_collector()
        datasets = stage_datasets(stage, settings, run_id)
        for uri in datasets.inputs:
            collector.add_input_asset(context=report_to_airflow, uri=uri)
        for uri in datasets.outputs:
            collector.add_output_asset(context=report_to_airflow, uri=uri)
    except Exception:
        log.warning("lineage of %s not reported", stage, exc_info=True)
