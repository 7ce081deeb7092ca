"""The stage -> datasets mapping OpenLineage events carry (mlops/lineage.py): every stage has one,
named after the object-store keys, and a stage's inputs are what an earlier stage wrote."""

from mlops.config import Settings
from mlops.lineage import STAGE_DATASETS, database_uri, stage_datasets
from mlops.stages import STAGE_NAMES

RUN_ID = "scheduled__2026-01-01T00:00:00+00:00"
RUN = "scheduled__2026-01-01T00_00_00_00_00"  # normalise_run_id, as the object keys have it


def s3_settings(**metadata) -> Settings:
    return Settings(object_store={"backend": "s3", "bucket": "docs"}, metadata=metadata or {"url": None})


def test_every_stage_declares_its_datasets():
    assert list(STAGE_DATASETS) == list(STAGE_NAMES)


def test_datasets_are_the_object_store_keys_of_the_run():
    settings = s3_settings()
    extract = stage_datasets("extract_data", settings, RUN_ID)
    assert extract.inputs == ["s3://docs/raw", f"s3://docs/runs/{RUN}/preprocess_documents/documents.parquet"]
    assert f"s3://docs/runs/{RUN}/extract_data" in extract.outputs
    assert f"s3://docs/reports/{RUN}/report.html" in stage_datasets("generate_reports", settings, RUN_ID).outputs
    custom = settings.model_copy(update={"prefixes": settings.prefixes.model_copy(update={"landing": "in/2026"})})
    assert "s3://docs/in/2026" in stage_datasets("acquire_documents", custom, RUN_ID).inputs


def test_local_datasets_are_file_uris_under_the_local_root(tmp_path):
    settings = Settings(data_dir=tmp_path)
    outputs = stage_datasets("acquire_documents", settings, RUN_ID).outputs
    assert (tmp_path / "raw").as_uri() in outputs
    assert (tmp_path / "metadata.db").as_uri() in outputs  # the SQLite metadata database


def test_every_run_dataset_a_stage_reads_was_written_by_an_earlier_stage():
    settings, written = s3_settings(), set()
    for stage in STAGE_NAMES:
        inputs, outputs = stage_datasets(stage, settings, RUN_ID)
        run_inputs = {uri for uri in inputs if f"/runs/{RUN}/" in uri}
        assert run_inputs <= written, (stage, run_inputs - written)
        written |= set(outputs)


def test_metadata_tables_name_host_database_and_schema_never_credentials():
    url = "postgresql+psycopg2://mlops:s3cret@db:5433/mlops?options=-csearch_path%3Dt_1"
    assert database_uri(s3_settings(url=url)) == "postgres://db:5433/mlops/t_1"
    assert database_uri(s3_settings(url="postgresql://u:p@db/mlops")) == "postgres://db:5432/mlops/public"
    store_results = stage_datasets("store_results", s3_settings(url=url), RUN_ID)
    assert "postgres://db:5433/mlops/t_1/extractions" in store_results.outputs
    assert not any("s3cret" in uri for uri in store_results.outputs)


def test_without_a_transport_nothing_is_collected(monkeypatch):
    """The provider disables itself without a transport: the runner then does not even create
    Airflow's hook lineage collector (creating it loads every plugin and provider)."""
    from airflow.providers.openlineage import conf
    from airflow.sdk import lineage

    from mlops.lineage import report_to_airflow

    for name in ("AIRFLOW__OPENLINEAGE__TRANSPORT", "AIRFLOW__OPENLINEAGE__CONFIG_PATH", "OPENLINEAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    for function in (conf.is_disabled, conf.transport):  # cached outside pytest only
        getattr(function, "cache_clear", lambda: None)()
    lineage.get_hook_lineage_collector.cache_clear()
    assert conf.is_disabled()
    report_to_airflow("extract_data", s3_settings(), RUN_ID)
    assert lineage.get_hook_lineage_collector.cache_info().currsize == 0
