"""Pools and slot claims: named pools of slots shared by every run (``default_pool`` has 128),
and the claims on their slots (waiting for them, or held by a run).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create pools (with default_pool, 128 slots, as Airflow) and slot_claims."""
    pools = op.create_table(
        "pools",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    assert pools is not None
    op.bulk_insert(
        pools,
        [{"name": "default_pool", "slots": 128, "description": "Default pool",
          "updated_at": datetime.now(UTC)}],
    )  # fmt: skip
    op.create_table(
        "slot_claims",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("pool", sa.String(), nullable=False),
        sa.Column("pool_slots", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("run_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("grp", sa.String(), nullable=False, server_default=""),
        sa.Column("grp_limit", sa.Integer()),
        sa.Column("run_free", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop what upgrade() added."""
    op.drop_table("slot_claims")
    op.drop_table("pools")
