"""Schedules and sensors: logical dates and data intervals of runs, one run per (flow, logical
date), sensor poke bookkeeping on attempts, and the scheduler's lock.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add the run and attempt columns, the unique run key, and the scheduler_locks table."""
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("logical_date", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("data_interval_start", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("data_interval_end", sa.DateTime(timezone=True)))
        batch.add_column(
            sa.Column("run_type", sa.String(), nullable=False, server_default="manual")
        )
    # NULL logical dates (plain `rota run`) never collide: both backends treat NULLs as distinct.
    op.create_index("uq_runs_flow_logical_date", "runs", ["flow", "logical_date"], unique=True)
    with op.batch_alter_table("task_attempts") as batch:
        batch.add_column(sa.Column("first_poke_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("pokes", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "scheduler_locks",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop what upgrade() added."""
    op.drop_table("scheduler_locks")
    with op.batch_alter_table("task_attempts") as batch:
        batch.drop_column("pokes")
        batch.drop_column("first_poke_at")
    op.drop_index("uq_runs_flow_logical_date", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("run_type")
        batch.drop_column("data_interval_end")
        batch.drop_column("data_interval_start")
        batch.drop_column("logical_date")
