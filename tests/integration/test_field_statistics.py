"""Field statistics (migration 0005): every run records them in store_results, on SQLite and
Postgres, and repeating the stage leaves one row per (run, field)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from mlops.io.metadata import FieldStatisticsRow, MetadataStore
from mlops.pipeline import run_all
from mlops.sample_data import generate_corpus
from mlops.stages import open_context, run_stage
from tests.fixtures.platform import CORPUS_SEED

pytestmark = pytest.mark.integration


def statistic(field: str, missing: int, **stats: object) -> dict[str, object]:
    return {"field": field, "kind": "numeric", "count": 10, "missing": missing, "missing_rate": missing / 10,
            "mean_confidence": 0.9, "stats": {"quantiles": [1.0, 2.0], **stats}}  # fmt: skip


def test_replace_field_statistics_keeps_the_last_set_of_a_run_only(metadata_store):
    metadata_store.replace_field_statistics("run-1", [statistic("principal", 1), statistic("term_months", 2)])
    metadata_store.replace_field_statistics("run-2", [statistic("principal", 3)])

    metadata_store.replace_field_statistics("run-1", [statistic("principal", 4, histogram={"counts": [1]})])

    rows = metadata_store.field_statistics()
    assert [(row["run_id"], row["field"], row["missing"]) for row in rows] == [("run-1", "principal", 4),
                                                                              ("run-2", "principal", 3)]  # fmt: skip
    assert rows[0]["stats"] == {"quantiles": [1.0, 2.0], "histogram": {"counts": [1]}}
    assert [row["run_id"] for row in metadata_store.field_statistics(["run-2"])] == ["run-2"]
    assert metadata_store.runs_with_field_statistics() == {"run-1", "run-2"}


def test_one_row_per_run_and_field_even_when_the_api_is_bypassed(metadata_store):
    metadata_store.replace_field_statistics("run-1", [statistic("principal", 1)])
    row = {"run_id": "run-1", "field": "principal", "kind": "numeric", "count": 1, "missing": 0,
           "missing_rate": 0.0, "stats": {}, "created_at": datetime.now(UTC)}  # fmt: skip
    with pytest.raises(sa.exc.IntegrityError), metadata_store.engine.begin() as conn:
        conn.execute(sa.insert(FieldStatisticsRow.__table__).values(row))


def test_every_run_records_its_field_statistics_and_a_repeated_store_keeps_one_set(backend_settings):
    store = open_context("setup", backend_settings).store
    generate_corpus(
        5, CORPUS_SEED, lambda name, data: store.put_bytes(f"landing/{name}", data), include_bad=False
    )
    summary = run_all("stats_run", backend_settings)
    metadata = MetadataStore.from_settings(backend_settings)
    extracted = metadata.extractions("stats_run")
    first = {row["field"]: row for row in metadata.field_statistics(["stats_run"])}

    assert {"doc_type", "principal", "borrower_name", "disbursement_date", "ocr_confidence"} <= set(first)
    assert all(row["count"] == len(extracted) == summary["extraction"]["documents"] for row in first.values())
    principal = [row["principal"] for row in extracted if row["principal"] is not None]
    assert first["principal"]["missing"] == len(extracted) - len(principal)
    assert first["principal"]["stats"]["min"] == min(principal)
    doc_types = first["doc_type"]["stats"]["frequencies"]
    assert sum(doc_types.values()) == len(extracted)
    assert set(doc_types) == {row["doc_type"] for row in extracted}
    names = {row["borrower_name"] for row in extracted if row["borrower_name"]}
    assert names and not any(name in repr(first["borrower_name"]) for name in names)  # lengths only

    run_stage("store_results", "stats_run", settings=backend_settings)

    again = metadata.field_statistics(["stats_run"])
    assert len(again) == len(first)
    assert {row["field"]: row["stats"] for row in again} == {
        field: row["stats"] for field, row in first.items()
    }
