"""Document attempts: documents a stage handed to a worker and has not finished with.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03 00:00:00

Self-contained on purpose (no import of the ORM classes): a migration must keep meaning what it
meant when it was written.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "document_attempts",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_run_id", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["sha256"], ["documents.sha256"], name="fk_document_attempts_sha256_documents"
        ),
        sa.PrimaryKeyConstraint("sha256", "stage", name="pk_document_attempts"),
    )


def downgrade() -> None:
    op.drop_table("document_attempts")
