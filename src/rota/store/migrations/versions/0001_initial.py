"""Create flows, runs and task_attempts.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Timestamps are plain timestamptz here: rota.store.tables.UtcDateTime only converts values.
revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the three tables and their indexes."""
    op.create_table(
        "flows",
        sa.Column("name", sa.String(), primary_key=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("code_hash", sa.String(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(), primary_key=True),
        sa.Column("flow", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("flow_path", sa.Text(), nullable=False, server_default=""),
        sa.Column("flow_hash", sa.String(), nullable=False, server_default=""),
        sa.Column("owner", sa.String()),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_runs_flow_created_at", "runs", ["flow", "created_at"])
    op.create_table(
        "task_attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False, server_default="-1"),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("operator", sa.String(), nullable=False, server_default=""),
        sa.Column("code_hash", sa.String(), nullable=False, server_default=""),
        sa.Column("not_before", sa.DateTime(timezone=True)),
        sa.Column("queued_at", sa.DateTime(timezone=True)),
        sa.Column("dispatched_at", sa.DateTime(timezone=True)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("committed_at", sa.DateTime(timezone=True)),
        sa.Column("worker", sa.String()),
        sa.Column("exit_code", sa.Integer()),
        sa.Column("error_type", sa.String()),
        sa.Column("error_message", sa.Text()),
        sa.Column("error_traceback", sa.Text()),
        sa.Column("output_path", sa.Text()),
        sa.Column("output_size", sa.BigInteger()),
        sa.Column("output_length", sa.BigInteger()),
        sa.Column("output_hash", sa.String()),
        sa.Column("output_serializer", sa.String()),
        sa.Column("cache_key", sa.String()),
        sa.Column("cache_parts", sa.JSON()),
        sa.Column("cached_from", sa.Integer()),
        sa.Column("log_path", sa.Text()),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name="fk_task_attempts_run_id", ondelete="CASCADE"
        ),
        sa.UniqueConstraint(
            "run_id", "task_id", "map_index", "try_number", name="uq_task_attempts_try"
        ),
    )
    op.create_index("ix_task_attempts_run_id_state", "task_attempts", ["run_id", "state"])
    op.create_index("ix_task_attempts_cache_key", "task_attempts", ["cache_key"])
    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String()),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("uri", "version", name="uq_dataset_versions_uri_version"),
    )
    op.create_table(
        "dataset_uses",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer()),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_dataset_uses_uri", "dataset_uses", ["uri"])


def downgrade() -> None:
    """Drop the tables."""
    op.drop_table("dataset_uses")
    op.drop_table("dataset_versions")
    op.drop_table("task_attempts")
    op.drop_table("runs")
    op.drop_table("flows")
