"""Extractions, findings and run metrics (migration 0002) behave the same on SQLite and Postgres."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from mlops.io.metadata import IN_CHUNK, MIGRATIONS_DIR, Base, MetadataStore
from mlops.models import FIELD_NAMES, DocumentRecord, Extraction, FieldValue, Finding

pytestmark = pytest.mark.integration


def sha(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def extraction_row(n: int, **fields: object) -> dict[str, object]:
    values: dict[str, object] = {
        "borrower_name": f"Borrower {n}",
        "account_number": f"ACCT-{n:06d}",
        "principal": 10_000.0 + n,
        "interest_rate": 5.5,
        "term_months": 120,
        "disbursement_date": "2020-09-01",
    } | fields
    extraction = Extraction(
        sha256=sha(n),
        extractor="rules",
        doc_type="master_promissory_note",
        doc_type_confidence=0.9,
        text_source="text_layer",
        pages=2,
        text_layer_pages=2,
        ocr_pages=0,
        fields={
            name: FieldValue(value=value, raw=str(value), confidence=0.8) for name, value in values.items()
        },
        seconds=0.25,
    )
    return extraction.row()


def finding(n: int, detector: str = "rules", **changes: object) -> Finding:
    values = {
        "sha256": sha(n),
        "field": "principal",
        "value": str(n),
        "detector": detector,
        "severity": "warning",
        "reason": f"reason {n}",
    }
    return Finding(**(values | changes))


def count_rows(store: MetadataStore, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one()


def alembic_config(conn: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


HEAD = "0007"  # the newest migration: bump it with each new one


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


# -- schema ---------------------------------------------------------------------------------


def test_head_is_the_newest_migration_and_orm_matches_the_migrated_schema(metadata_store):
    assert head_revision() == HEAD
    assert metadata_store.schema_revision() == HEAD
    with metadata_store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        tables = set(sa.inspect(conn).get_table_names())
    assert {"extractions", "findings", "run_metrics", "document_attempts"} <= tables


def test_upgrading_a_0001_database_keeps_its_data(empty_store):
    with empty_store.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
    assert empty_store.schema_revision() == "0001"
    document = DocumentRecord(
        sha256=sha(1), source_key="landing/loan-1.pdf", original_filename="loan-1.pdf",
        size_bytes=1001, raw_key=f"raw/{sha(1)}.pdf",
    )  # fmt: skip
    assert empty_store.register_document(document, "run-1") is True
    with empty_store.engine.connect() as conn:
        assert "extractions" not in sa.inspect(conn).get_table_names()

    empty_store.migrate()

    assert empty_store.schema_revision() == HEAD
    assert empty_store.get_document(sha(1))["source_key"] == "landing/loan-1.pdf"
    assert empty_store.save_extractions("run-2", [extraction_row(1)]) == 1
    assert [row["sha256"] for row in empty_store.extractions("run-2")] == [sha(1)]
    with empty_store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_to_0001_and_back(metadata_store):
    metadata_store.save_metrics("run-1", {"accuracy": 0.9})
    with metadata_store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")
    assert metadata_store.schema_revision() == "0001"
    with metadata_store.engine.connect() as conn:
        assert not {"extractions", "findings", "run_metrics"} & set(sa.inspect(conn).get_table_names())

    metadata_store.migrate()

    assert metadata_store.schema_revision() == HEAD
    assert metadata_store.metrics("run-1") == {}


# -- extractions ----------------------------------------------------------------------------


def test_save_extractions_upserts_per_run_so_a_retry_overwrites(metadata_store):
    assert metadata_store.save_extractions("run-1", [extraction_row(1), extraction_row(2)]) == 2
    assert metadata_store.save_extractions(
        "run-1", [extraction_row(2, principal=999.0)], validation_pass={sha(2): False}
    ) == 1  # fmt: skip
    assert metadata_store.save_extractions("run-2", [extraction_row(2)], {sha(2): True}) == 1

    assert count_rows(metadata_store, "extractions") == 3
    run_1 = metadata_store.extractions("run-1")
    assert [row["sha256"] for row in run_1] == sorted([sha(1), sha(2)])
    retried = next(row for row in run_1 if row["sha256"] == sha(2))
    assert (retried["principal"], retried["validation_pass"], retried["run_id"]) == (999.0, False, "run-1")
    first = next(row for row in run_1 if row["sha256"] == sha(1))
    assert first["validation_pass"] is None
    assert first == {**extraction_row(1), "run_id": "run-1", "validation_pass": None}
    assert set(first) == {*extraction_row(1), "run_id", "validation_pass"}
    assert {f"{name}_confidence" for name in FIELD_NAMES} <= set(first)

    run_2 = metadata_store.extractions("run-2")
    assert [(row["principal"], row["validation_pass"]) for row in run_2] == [(10_002.0, True)]
    assert [(row["run_id"], row["sha256"]) for row in metadata_store.extractions()] == [
        ("run-1", sha(1)), ("run-1", sha(2)), ("run-2", sha(2))
    ]  # fmt: skip
    assert metadata_store.extractions("run-404") == []


def test_save_extractions_keeps_the_last_row_of_a_sha_within_one_call(metadata_store):
    rows = [extraction_row(1, principal=1.0), extraction_row(1, principal=2.0)]

    assert metadata_store.save_extractions("run-1", rows) == 1

    assert [row["principal"] for row in metadata_store.extractions("run-1")] == [2.0]


def test_save_extractions_coerces_numpy_and_nan_to_valid_json(metadata_store):
    row = extraction_row(1)
    row |= {
        "principal": np.float64("nan"),
        "interest_rate": np.float32(4.25),
        "term_months": np.int64(120),
        "monthly_payment": float("inf"),
        "servicer": pd.NA,
        "disbursement_date": pd.NaT,
        "doc_type_confidence": np.float64(0.75),
        "pages": np.int32(3),
        "ocr_confidence": float("nan"),
        "borrower_name": None,
    }
    from_frame = pd.DataFrame([row, extraction_row(2)]).to_dict(orient="records")[1]
    rows = [row, from_frame]  # raw numpy scalars, and a frame row whose None fields became NaN
    assert math.isnan(from_frame["monthly_payment"])
    assert metadata_store.save_extractions("run-1", rows, {sha(1): np.bool_(True)}) == 2

    saved = {row["sha256"]: row for row in metadata_store.extractions("run-1")}
    first = saved[sha(1)]
    assert first["principal"] is None and first["monthly_payment"] is None
    assert first["servicer"] is None and first["disbursement_date"] is None
    assert first["borrower_name"] is None and first["ocr_confidence"] is None
    assert (first["interest_rate"], first["term_months"], first["pages"]) == (4.25, 120, 3)
    assert type(first["term_months"]) is int and type(first["interest_rate"]) is float
    assert first["doc_type_confidence"] == 0.75
    assert first["validation_pass"] is True
    assert saved[sha(2)]["monthly_payment"] is None and saved[sha(2)]["principal"] == 10_002.0

    table = sa.table("extractions", sa.column("sha256"), sa.column("data"), sa.column("pages"),
                     sa.column("ocr_confidence"), sa.column("validation_pass"))  # fmt: skip
    with metadata_store.engine.connect() as conn:
        raw = conn.execute(
            sa.select(
                table.c.sha256,
                sa.cast(table.c.data, sa.Text),
                table.c.pages,
                table.c.ocr_confidence,
                table.c.validation_pass,
            )
        ).all()

    def reject(token: str) -> None:
        raise AssertionError(f"invalid JSON token {token}")

    typed = {}
    for sha256, text, pages, ocr_confidence, passed in raw:
        assert json.loads(text, parse_constant=reject)["sha256"] == sha256
        typed[sha256] = (pages, ocr_confidence, passed)
    assert typed[sha(1)] == (3, None, True)
    assert typed[sha(2)] == (2, None, None)


def test_field_history_excludes_the_run_and_returns_numeric_columns(metadata_store):
    metadata_store.save_extractions("run-1", [extraction_row(n) for n in range(3)])
    metadata_store.save_extractions(
        "run-2", [extraction_row(3, principal="n/a"), extraction_row(4, interest_rate=None)]
    )
    metadata_store.save_extractions("run-3", [extraction_row(5, principal=1e9)])

    history = metadata_store.field_history(
        ["principal", "interest_rate", "term_months"], exclude_run_id="run-3"
    )

    assert list(history.columns) == ["principal", "interest_rate", "term_months"]
    assert all(dtype == np.float64 for dtype in history.dtypes)
    assert len(history) == 5
    assert history["principal"].tolist()[:3] == [10_000.0, 10_001.0, 10_002.0]
    assert math.isnan(history["principal"].iloc[3]) and history["principal"].iloc[4] == 10_004.0
    assert history["interest_rate"].isna().tolist() == [False] * 4 + [True]
    assert (history["term_months"] == 120.0).all()
    assert 1e9 not in history["principal"].tolist()

    recent = metadata_store.field_history(["principal"], limit=2)
    assert recent["principal"].tolist() == [10_004.0, 1e9]  # the most recent rows, oldest first
    assert len(metadata_store.field_history(["principal"])) == 6

    unknown = metadata_store.field_history(["no_such_field"], exclude_run_id="run-3")
    assert len(unknown) == 5 and unknown["no_such_field"].isna().all()


def test_field_history_of_an_empty_store_is_an_empty_frame(metadata_store):
    history = metadata_store.field_history(["principal", "interest_rate"])

    assert list(history.columns) == ["principal", "interest_rate"]
    assert len(history) == 0
    assert all(dtype == np.float64 for dtype in history.dtypes)


# -- findings -------------------------------------------------------------------------------


def test_replace_findings_is_idempotent_per_run(metadata_store):
    assert metadata_store.replace_findings("run-1", [finding(1), finding(2, field=None, value=None)]) == 2
    assert metadata_store.replace_findings("run-2", [finding(3, detector="robust_zscore")]) == 1
    assert metadata_store.replace_findings("run-1", [finding(1), finding(2, field=None, value=None)]) == 2

    run_1 = metadata_store.findings("run-1")
    assert count_rows(metadata_store, "findings") == 3
    assert [(f["sha256"], f["field"], f["value"], f["detector"]) for f in run_1] == [
        (sha(1), "principal", "1", "rules"), (sha(2), None, None, "rules")
    ]  # fmt: skip
    assert {"id", "run_id", "severity", "reason", "created_at"} <= set(run_1[0])
    assert run_1[0]["created_at"].utcoffset().total_seconds() == 0
    assert Finding.model_validate(run_1[0]) == finding(1)
    assert [f["run_id"] for f in metadata_store.findings()] == ["run-2", "run-1", "run-1"]

    assert metadata_store.replace_findings("run-1", iter([])) == 0
    assert metadata_store.findings("run-1") == []
    assert [f["sha256"] for f in metadata_store.findings("run-2")] == [sha(3)]


def test_replace_findings_is_one_transaction(metadata_store):
    metadata_store.replace_findings("run-1", [finding(1), finding(2)])
    broken = [finding(n) for n in range(IN_CHUNK + 10)] + [Finding.model_construct(
        sha256=None, field=None, value=None, detector="rules", severity="warning", reason="x"
    )]  # fmt: skip

    with pytest.raises(sa.exc.IntegrityError):
        metadata_store.replace_findings("run-1", broken)

    assert [f["sha256"] for f in metadata_store.findings("run-1")] == [sha(1), sha(2)]
    assert count_rows(metadata_store, "findings") == 2


# -- metrics --------------------------------------------------------------------------------


def test_save_metrics_upserts_per_run_and_name(metadata_store):
    metadata_store.save_metrics("run-1", {"accuracy": 0.9, "documents": np.int64(12)})
    metadata_store.save_metrics("run-1", {"accuracy": np.float64(0.95), "coverage": float("nan")})
    metadata_store.save_metrics("run-2", {"accuracy": 0.5})
    metadata_store.save_metrics("run-2", {})

    run_1 = metadata_store.metrics("run-1")
    assert list(run_1) == ["accuracy", "coverage", "documents"]
    assert (run_1["accuracy"], run_1["documents"]) == (0.95, 12.0)
    assert all(type(value) is float for value in run_1.values())
    assert math.isnan(run_1["coverage"])
    assert metadata_store.metrics("run-2") == {"accuracy": 0.5}
    assert metadata_store.metrics("run-404") == {}
    assert count_rows(metadata_store, "run_metrics") == 4


UNIQUE_ROWS = {
    "extractions": {
        "run_id": "run-1", "sha256": sha(1), "extractor": "rules", "doc_type_confidence": 0.5,
        "text_source": "ocr", "pages": 1, "text_layer_pages": 0, "ocr_pages": 1, "data": {},
        "created_at": datetime(2024, 1, 1, tzinfo=UTC),
    },
    "run_metrics": {"run_id": "run-1", "name": "accuracy", "value": 0.1},
}  # fmt: skip


@pytest.mark.parametrize("table", UNIQUE_ROWS)
def test_unique_constraints_hold_even_when_the_api_is_bypassed(metadata_store, table):
    metadata_store.save_extractions("run-1", [extraction_row(1)])
    metadata_store.save_metrics("run-1", {"accuracy": 0.9})
    model = next(mapper.class_ for mapper in Base.registry.mappers if mapper.local_table.name == table)

    with pytest.raises(sa.exc.IntegrityError), metadata_store.engine.begin() as conn:
        conn.execute(sa.insert(model), [UNIQUE_ROWS[table]])

    assert count_rows(metadata_store, table) == 1
