"""Helpers for testing flows and Rota itself: read a task's stored output back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rota.artifacts.store import open_artifact_store
from rota.engine.report import RunSummary
from rota.store.base import AttemptRecord


def read_output(rec: AttemptRecord) -> Any:
    """The value an attempt stored (None when it stored nothing).

    Raises:
        ArtifactError: the stored object is missing or does not match its content hash.
    """
    if rec.output_path is None:
        return None
    store = open_artifact_store(rec.output_path)
    return store.get(
        rec.output_path,
        rec.output_serializer or "pickle",
        producer=rec.task_id,
        content_hash=rec.output_hash,
    )


def output_of(summary: RunSummary, task_id: str) -> Any:
    """The value task *task_id* of a finished run returned."""
    return read_output(summary.tasks[task_id].latest)


class FakeClock:
    """A clock that stands still until told: ``clock.advance(timedelta(days=1))``.

    Give it to a Runner or Scheduler to test schedules without sleeping. ``monotonic()`` moves with
    ``now()``.
    """

    def __init__(self, start: datetime) -> None:
        if start.utcoffset() is None:
            raise ValueError("FakeClock needs an aware start time")
        self._now = start.astimezone(UTC)
        self._start = self._now

    def now(self) -> datetime:
        """The current fake time (aware, UTC)."""
        return self._now

    def monotonic(self) -> float:
        """Seconds since the clock's start."""
        return (self._now - self._start).total_seconds()

    def advance(self, by: timedelta) -> datetime:
        """Move time forward by *by* and return the new now."""
        self._now += by
        return self._now

    def set(self, to: datetime) -> None:
        """Jump to *to* (not backwards)."""
        if to.astimezone(UTC) < self._now:
            raise ValueError("a FakeClock does not go backwards")
        self._now = to.astimezone(UTC)
