"""Clarity only where there is a scan to judge.

Revision ID: 0006
Revises: 0005
Create Date: 2025-01-06 00:00:00

``preprocess_results.clarity`` is the mean clarity of a document's scanned pages; a document
whose every page has a text layer is rendered small for its perceptual hash only and has none
(NULL). Earlier rows keep their values.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("preprocess_results") as batch:
        batch.alter_column("clarity", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE preprocess_results SET clarity = 1.0 WHERE clarity IS NULL")
    with op.batch_alter_table("preprocess_results") as batch:
        batch.alter_column("clarity", existing_type=sa.Float(), nullable=False)
