"""Read indexes: a page of a run's tasks in the order the run made them (``rota runs show`` of a
100,000-task run reads one page, not the run).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``ix_task_attempts_run_first`` on ``task_attempts``."""
    op.create_index(
        "ix_task_attempts_run_first",
        "task_attempts",
        ["run_id", "map_index", "try_number", "id"],
    )


def downgrade() -> None:
    """Drop what upgrade() added."""
    op.drop_index("ix_task_attempts_run_first", table_name="task_attempts")
