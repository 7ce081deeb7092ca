"""Field statistics: per run and field, the summary drift and monitoring compare across runs.

Revision ID: 0005
Revises: 0004
Create Date: 2025-01-05 00:00:00

One row per (run_id, field): kind, counts, missing rate, mean confidence, and the kind-specific
statistics (quantiles, histogram, frequencies, lengths) as JSON (JSONB on Postgres). A run's rows
are replaced as a whole when store_results runs again.

Self-contained on purpose (no import of the ORM classes): a migration must keep meaning what it
meant when it was written.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_TYPE = sa.JSON().with_variant(JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "field_statistics",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("field", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("missing_rate", sa.Float(), nullable=False),
        sa.Column("mean_confidence", sa.Float(), nullable=True),
        sa.Column("stats", JSON_TYPE, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_field_statistics"),
        sa.UniqueConstraint("run_id", "field", name="uq_field_statistics_run_id_field"),
    )


def downgrade() -> None:
    op.drop_table("field_statistics")
