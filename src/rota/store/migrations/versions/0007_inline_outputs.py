"""Inline outputs: a small output's bytes are kept in its attempt's row
(``task_attempts.output_inline``), written in the transaction that records the success.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``task_attempts.output_inline``."""
    with op.batch_alter_table("task_attempts") as batch:
        batch.add_column(sa.Column("output_inline", sa.LargeBinary()))


def downgrade() -> None:
    """Drop what upgrade() added."""
    with op.batch_alter_table("task_attempts") as batch:
        batch.drop_column("output_inline")
