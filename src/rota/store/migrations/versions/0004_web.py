"""The web UI's tables: each run's graph, paused flows, cancel requests, and indexes for paging
through runs newest first.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create run_graphs, flow_pauses and run_cancels, and the run paging indexes."""
    op.create_table(
        "run_graphs",
        sa.Column(
            "run_id",
            sa.String(),
            sa.ForeignKey("runs.run_id", name="fk_run_graphs_run_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("graph", sa.JSON(), nullable=False),
    )
    op.create_table(
        "flow_pauses",
        sa.Column("flow", sa.String(), primary_key=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "run_cancels",
        sa.Column(
            "run_id",
            sa.String(),
            sa.ForeignKey("runs.run_id", name="fk_run_cancels_run_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(), nullable=False),
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at", "run_id"])
    op.create_index("ix_runs_state_created_at", "runs", ["state", "created_at", "run_id"])


def downgrade() -> None:
    """Drop what upgrade() added."""
    op.drop_index("ix_runs_state_created_at", table_name="runs")
    op.drop_index("ix_runs_created_at", table_name="runs")
    op.drop_table("run_cancels")
    op.drop_table("flow_pauses")
    op.drop_table("run_graphs")
