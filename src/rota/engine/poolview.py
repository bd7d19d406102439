"""Pools as people look at them: which claims count now, and a pool as JSON (CLI and UI)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rota.engine.lease import is_dead
from rota.store.base import Liveness, PoolRecord


def liveness_now(heartbeat_timeout: float, now: datetime | None = None) -> Liveness:
    """Which claims count at *now*: a run's lease older than *heartbeat_timeout* seconds, or
    whose owner is known to be dead, holds no slots."""
    at = now or datetime.now(UTC)
    return Liveness("", at - timedelta(seconds=heartbeat_timeout), is_dead)


def pool_json(p: PoolRecord) -> dict[str, Any]:
    """A pool as ``rota pools list --json`` and ``GET /api/pools`` show it."""
    return {
        "name": p.name, "slots": p.slots, "running": p.running, "waiting": p.waiting,
        "open": p.open, "description": p.description, "updated": p.updated_at.isoformat(),
    }  # fmt: skip
