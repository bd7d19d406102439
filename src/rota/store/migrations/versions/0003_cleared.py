"""Cleared attempts: ``rota clear`` marks the attempt it makes, where a task's retry budget starts
again.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``task_attempts.cleared_at``."""
    with op.batch_alter_table("task_attempts") as batch:
        batch.add_column(sa.Column("cleared_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    """Drop what upgrade() added."""
    with op.batch_alter_table("task_attempts") as batch:
        batch.drop_column("cleared_at")
