"""Foundation: documents, landing objects, runs, audit log, watermarks, preprocess results.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00

Self-contained on purpose (no import of the ORM classes): a migration must keep meaning what it
meant when it was written. On Postgres the audit log is made append-only by a trigger.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("source_key", sa.String(1024), nullable=False),
        sa.Column("original_filename", sa.String(1024), nullable=False),
        sa.Column("format", sa.String(16), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("quarantine_reason", sa.String(64), nullable=True),
        sa.Column("quarantine_detail", sa.Text(), nullable=False),
        sa.Column("raw_key", sa.String(1024), nullable=False),
        sa.Column("first_seen_run", sa.String(255), nullable=False),
        sa.Column("last_seen_run", sa.String(255), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("sha256", name="pk_documents"),
    )
    op.create_index("ix_documents_status", "documents", ["status"])
    op.create_index("ix_documents_last_seen_run", "documents", ["last_seen_run"])

    op.create_table(
        "landing_objects",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("source_key", sa.String(1024), nullable=False),
        sa.Column("etag", sa.String(255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        _timestamp("acquired_at"),
        sa.Column("is_duplicate", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_landing_objects"),
        sa.ForeignKeyConstraint(["sha256"], ["documents.sha256"], name="fk_landing_objects_sha256_documents"),
        sa.UniqueConstraint("source_key", "etag", name="uq_landing_objects_source_key_etag"),
    )
    op.create_index("ix_landing_objects_sha256", "landing_objects", ["sha256"])
    op.create_index("ix_landing_objects_run_id", "landing_objects", ["run_id"])

    op.create_table(
        "pipeline_runs",
        sa.Column("run_id", sa.String(255), nullable=False),
        _timestamp("started_at"),
        _timestamp("finished_at", nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("counts", JSON_TYPE, nullable=False),
        sa.Column("settings_fingerprint", sa.String(64), nullable=False),
        sa.Column("pipeline_version", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_pipeline_runs"),
    )

    op.create_table(
        "audit_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("details", JSON_TYPE, nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_run_id", "audit_events", ["run_id"])
    op.create_index("ix_audit_events_sha256", "audit_events", ["sha256"])

    op.create_table(
        "processed_documents",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("pipeline_version", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        _timestamp("processed_at"),
        sa.PrimaryKeyConstraint("id", name="pk_processed_documents"),
        sa.UniqueConstraint(
            "sha256", "pipeline_version", name="uq_processed_documents_sha256_pipeline_version"
        ),
    )

    op.create_table(
        "preprocess_results",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("has_text_layer", sa.Boolean(), nullable=False),
        sa.Column("clarity", sa.Float(), nullable=False),
        sa.Column("min_dpi", sa.Float(), nullable=True),
        sa.Column("phash", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("near_duplicate_of", sa.String(64), nullable=True),
        sa.Column("near_duplicate_distance", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_preprocess_results"),
        sa.UniqueConstraint("sha256", "run_id", name="uq_preprocess_results_sha256_run_id"),
    )
    op.create_index("ix_preprocess_results_run_id", "preprocess_results", ["run_id"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP;
            END
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update_delete ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    for table in (
        "preprocess_results",
        "processed_documents",
        "audit_events",
        "pipeline_runs",
        "landing_objects",
        "documents",
    ):
        op.drop_table(table)
