"""The SQL schema of the store, as SQLAlchemy Core tables.

Migrations in ``migrations/versions`` create exactly these tables; a test compares the two. States
are stored as their string values, timestamps as UTC (see :class:`UtcDateTime`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and read back as a timezone-aware UTC datetime on every backend.

    PostgreSQL keeps it as ``timestamptz``; SQLite, which has no time zones, as a naive UTC string
    of fixed width (so it sorts in time order).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert an aware datetime to UTC (naive UTC for SQLite).

        Raises:
            ValueError: *value* is naive.
        """
        if value is None:
            return None
        value = to_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Return *value* as an aware UTC datetime."""
        return None if value is None else _aware(value)

    # On SQLite each timestamp crosses as text. SQLAlchemy's DATETIME formats and parses it
    # field by field with a pattern (about 4 µs a value, three or four values per state change);
    # the same text from datetime's own isoformat/fromisoformat costs a fraction of that
    # (tests/store/test_tables.py checks both ways against SQLAlchemy's own processors).
    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        """On SQLite, an aware datetime as the UTC text SQLAlchemy's DATETIME stores."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return sqlite_text

    def result_processor(
        self, dialect: Dialect, coltype: object
    ) -> Callable[[Any], datetime | None] | None:
        """On SQLite, the stored UTC text as an aware UTC datetime."""
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return sqlite_time


def sqlite_text(value: datetime | None) -> str | None:
    """*value* (aware) as SQLite keeps it: naive UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``.

    Raises:
        ValueError: *value* is naive.
    """
    if value is None:
        return None
    return to_utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


def sqlite_time(value: Any) -> datetime | None:
    """A timestamp SQLite returns (text in UTC) as an aware UTC datetime."""
    if value is None:
        return None
    stamp = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(stamp, datetime):
        raise ValueError(f"{value!r} is not a timestamp")
    return _aware(stamp)


def to_utc(value: datetime) -> datetime:
    """Aware *value* in UTC.

    Raises:
        ValueError: *value* is naive.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the store needs aware datetimes")
    return value.astimezone(UTC)


def _aware(stamp: datetime) -> datetime:
    """A stored time (naive: UTC) as an aware UTC datetime."""
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


metadata = MetaData()

flows = Table(
    "flows",
    metadata,
    Column("name", String, primary_key=True),
    Column("path", Text, nullable=False),
    Column("code_hash", String, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String, primary_key=True),
    Column("flow", String, nullable=False),
    Column("state", String, nullable=False),
    Column("params", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime),
    Column("ended_at", UtcDateTime),
    Column("flow_path", Text, nullable=False, server_default=""),
    Column("flow_hash", String, nullable=False, server_default=""),
    Column("owner", String),
    Column("heartbeat_at", UtcDateTime),
    Column("logical_date", UtcDateTime),
    Column("data_interval_start", UtcDateTime),
    Column("data_interval_end", UtcDateTime),
    Column("run_type", String, nullable=False, server_default="manual"),
    Column("param_changes", JSON),
    Index("ix_runs_flow_created_at", "flow", "created_at"),
    Index("uq_runs_flow_logical_date", "flow", "logical_date", unique=True),
    Index("ix_runs_created_at", "created_at", "run_id"),
    Index("ix_runs_state_created_at", "state", "created_at", "run_id"),
)

run_graphs = Table(
    "run_graphs",
    metadata,
    Column(
        "run_id",
        String,
        ForeignKey("runs.run_id", name="fk_run_graphs_run_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("graph", JSON, nullable=False),
)
"""Each run's graph as it was made: ``[[task id, [upstream ids]], ...]``, so the UI draws a run
without importing its flow's code."""

flow_pauses = Table(
    "flow_pauses",
    metadata,
    Column("flow", String, primary_key=True),
    Column("paused_at", UtcDateTime, nullable=False),
)
"""A row per paused flow: the scheduler makes no scheduled runs of it and starts none."""

run_cancels = Table(
    "run_cancels",
    metadata,
    Column(
        "run_id",
        String,
        ForeignKey("runs.run_id", name="fk_run_cancels_run_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("requested_by", String, nullable=False),
)
"""A cancel asked of a run a live runner drives: the runner sees it at its next heartbeat."""

dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uri", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("content_hash", String),
    Column("run_id", String, nullable=False),
    Column("task_id", String, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("uri", "version", name="uq_dataset_versions_uri_version"),
)

dataset_uses = Table(
    "dataset_uses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uri", Text, nullable=False),
    Column("version", Integer),
    Column("run_id", String, nullable=False),
    Column("task_id", String, nullable=False),
    Column("used_at", UtcDateTime, nullable=False),
    Index("ix_dataset_uses_uri", "uri"),
)

task_attempts = Table(
    "task_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "run_id",
        String,
        ForeignKey("runs.run_id", name="fk_task_attempts_run_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("task_id", String, nullable=False),
    Column("map_index", Integer, nullable=False, server_default="-1"),
    Column("try_number", Integer, nullable=False),
    Column("state", String, nullable=False),
    Column("operator", String, nullable=False, server_default=""),
    Column("code_hash", String, nullable=False, server_default=""),
    Column("not_before", UtcDateTime),
    Column("queued_at", UtcDateTime),
    Column("dispatched_at", UtcDateTime),
    Column("started_at", UtcDateTime),
    Column("finished_at", UtcDateTime),
    Column("committed_at", UtcDateTime),
    Column("worker", String),
    Column("exit_code", Integer),
    Column("error_type", String),
    Column("error_message", Text),
    Column("error_traceback", Text),
    Column("output_path", Text),
    Column("output_size", BigInteger),
    Column("output_length", BigInteger),
    Column("output_hash", String),
    Column("output_serializer", String),
    Column("output_inline", LargeBinary),
    Column("cache_key", String),
    Column("cache_parts", JSON),
    Column("cached_from", Integer),
    Column("log_path", Text),
    Column("first_poke_at", UtcDateTime),
    Column("pokes", Integer, nullable=False, server_default="0"),
    Column("cleared_at", UtcDateTime),
    UniqueConstraint("run_id", "task_id", "map_index", "try_number", name="uq_task_attempts_try"),
    Index("ix_task_attempts_run_id_state", "run_id", "state"),
    Index("ix_task_attempts_cache_key", "cache_key"),
    Index("ix_task_attempts_run_first", "run_id", "map_index", "try_number", "id"),
)

scheduler_locks = Table(
    "scheduler_locks",
    metadata,
    Column("name", String, primary_key=True),
    Column("holder", String, nullable=False),
    Column("acquired_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False),
)
"""One row per held lock: on SQLite the single scheduler holds ``scheduler``."""

pools = Table(
    "pools",
    metadata,
    Column("name", String, primary_key=True),
    Column("slots", Integer, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("updated_at", UtcDateTime, nullable=False),
)
"""Named pools of slots shared by every run (``rota pools``); ``default_pool`` is made with 128."""

slot_claims = Table(
    "slot_claims",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("attempt_id", Integer, nullable=False),
    Column("run_id", String, nullable=False),
    Column("owner", String, nullable=False),
    Column("held", Boolean, nullable=False),
    Column("pool", String, nullable=False),
    Column("pool_slots", Integer, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("run_date", UtcDateTime, nullable=False),
    Column("grp", String, nullable=False, server_default=""),
    Column("grp_limit", Integer),
    Column("run_free", Integer, nullable=False, server_default="0"),
    Column("filed_at", UtcDateTime, nullable=False),
)
"""Claims on pool slots (rota.model.allocation): one row per attempt that waits for slots, or per
slot a run holds (granted for one attempt, handed on to others). A row counts while the row's
owner holds its run's lease."""
