"""Sensors in the run loop: the first poke persisted, ``reschedule`` pokes holding no worker.

A sensor attempt in ``reschedule`` mode that is not satisfied reports ``reschedule_at``; the loop
moves it ``running -> sensing`` (its worker slot is free again) and, when the time comes,
``sensing -> queued`` and dispatches the same attempt again. Pokes never use up a try: only
attempts that begin for the first time count for the retry policy.

Every time of a sensor attempt but its end is its first poke's (queued, dispatched, started),
so ``rota runs show`` splits it into waits that are in order: the execution spans the pokes and
the time between them.

The sensor's timeout counts from its first poke, stored on the attempt (``first_poke_at``). A
later attempt of the same task in the same run (after a runner died, or a resume) takes the
earliest first poke of all of them, so the timeout survives restarts.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rota.engine.book import Key, RunBook
from rota.model.states import TaskState
from rota.store.base import AttemptRecord

Waiting = list[tuple[datetime, Key]]
"""The loop's heap of keys waiting for a time (a retry's back-off, a sensor's next poke)."""

SENSOR_TIMEOUT = "rota.errors.SensorTimeout"
"""Qualified name of the error a timed-out sensor fails with; never retried."""


def is_sensor(op: object) -> bool:
    """Whether *op* is a sensor's operator."""
    return bool(getattr(op, "is_sensor", False))


@dataclass
class SensorBook:
    """What the loop knows of its sensors: first pokes, poke counts, and re-dispatched attempts."""

    first_poke: dict[Key, datetime] = field(default_factory=dict)
    pokes: dict[Key, int] = field(default_factory=dict)
    repoking: set[int] = field(default_factory=set)
    """Attempt ids dispatched again after sensing: their start is not a new try."""

    def note(self, key: Key, rec: AttemptRecord) -> None:
        """Take in a stored attempt of *key* (earliest first poke wins; latest try's pokes)."""
        if rec.first_poke_at is not None:
            known = self.first_poke.get(key)
            if known is None or rec.first_poke_at < known:
                self.first_poke[key] = rec.first_poke_at
        self.pokes[key] = rec.pokes

    def spec_fields(self, key: Key) -> dict[str, Any]:
        """AttemptSpec fields of a sensor dispatch."""
        first = self.first_poke.get(key)
        return {
            "first_poke_at": first.timestamp() if first is not None else None,
            "pokes": self.pokes.get(key, 0),
        }

    def on_started(self, key: Key, attempt_id: int, at: datetime, fields: dict[str, Any]) -> bool:
        """Record a sensor's first poke in *fields*; True if this start is a new try."""
        if key not in self.first_poke:
            self.first_poke[key] = at
            fields["first_poke_at"] = at
        if attempt_id in self.repoking:  # the attempt began at its first poke: keep its times
            self.repoking.discard(attempt_id)
            fields.pop("started_at", None)
            fields.pop("dispatched_at", None)
            return False
        return True


def reschedule(
    sensors: SensorBook,
    book: RunBook,
    waiting: Waiting,
    key: Key,
    at: float,
    fields: dict[str, Any],
) -> None:
    """Park the attempt of *key* in ``sensing`` until *at* (epoch seconds), holding no worker."""
    sensors.pokes[key] = sensors.pokes.get(key, 0) + 1
    fields["pokes"] = sensors.pokes[key]
    book.change(key, TaskState.SENSING, fields)
    heapq.heappush(waiting, (datetime.fromtimestamp(at, UTC), key))


def requeue(sensors: SensorBook, book: RunBook, key: Key) -> None:
    """Queue the attempt of *key* again from ``sensing``, as a re-poke (not a new try).

    A re-poke keeps the attempt's queue, dispatch and start times (its first poke's; see
    :meth:`SensorBook.on_started`): its waits stay in order, and its execution spans its pokes.
    """
    sensors.repoking.add(book.attempt[key].id)
    book.change(key, TaskState.QUEUED, {})
