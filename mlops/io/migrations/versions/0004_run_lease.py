"""Run lease and run outcomes: one live run per store, and what became of each run.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04 00:00:00

``run_lease`` holds at most one row per lease name (the pipeline's is ``pipeline``): the run that
may work on the store and until when, renewed by that run's heartbeat. ``pipeline_runs`` gets
the outcome of the work (running, completed, interrupted, abandoned, error) and its reason beside
the gate's verdict (passed, warning, failed), which ``status`` used to mix. Runs closed before
this revision: success and partial become completed with verdict passed and warning; failed
becomes completed with verdict failed and a reason saying that it may have been a crash (the old
status cannot tell); running stays running, and the next run marks it abandoned.

Self-contained on purpose (no import of the ORM classes): a migration must keep meaning what it
meant when it was written.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "run_lease",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        _timestamp("acquired_at"),
        _timestamp("heartbeat_at"),
        _timestamp("expires_at"),
        sa.PrimaryKeyConstraint("name", name="pk_run_lease"),
    )
    with op.batch_alter_table("pipeline_runs") as batch:
        batch.add_column(sa.Column("outcome", sa.String(16), nullable=False, server_default="running"))
        batch.add_column(sa.Column("outcome_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("verdict", sa.String(16), nullable=True))
        batch.create_index("ix_pipeline_runs_outcome", ["outcome"])
    runs = sa.table(
        "pipeline_runs",
        sa.column("status", sa.String),
        sa.column("outcome", sa.String),
        sa.column("outcome_reason", sa.Text),
        sa.column("verdict", sa.String),
    )
    for status, verdict in (("success", "passed"), ("partial", "warning"), ("failed", "failed")):
        reason = (
            "closed before migration 0004 with status failed: a failed gate or a crash"
            if status == "failed"
            else None
        )
        op.execute(
            runs.update()
            .where(runs.c.status == status)
            .values(outcome="completed", verdict=verdict, outcome_reason=reason)
        )


def downgrade() -> None:
    with op.batch_alter_table("pipeline_runs") as batch:
        batch.drop_index("ix_pipeline_runs_outcome")
        batch.drop_column("verdict")
        batch.drop_column("outcome_reason")
        batch.drop_column("outcome")
    op.drop_table("run_lease")
