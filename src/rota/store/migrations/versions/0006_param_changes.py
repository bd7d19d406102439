"""Parameter changes: ``rota resume -p`` records on the run which parameters it changed, from
what to what and when.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``runs.param_changes``."""
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("param_changes", sa.JSON()))


def downgrade() -> None:
    """Drop what upgrade() added."""
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("param_changes")
