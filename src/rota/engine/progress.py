"""What a run's live display shows: counts, the tasks running, and the tasks waiting for their
time (a retry's back-off, a sensor's next poke) with the seconds left."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rota.engine.runner import Progress, Wait
from rota.model.states import FAILURES, TaskState

if TYPE_CHECKING:
    from rota.engine.loop import RunLoop

_DONE = frozenset({TaskState.SUCCESS, TaskState.CACHED, TaskState.SKIPPED})


def _name(key: tuple[str, int]) -> str:
    tid, index = key
    return tid if index < 0 else f"{tid}@{index}"


def progress_of(loop: RunLoop) -> Progress:
    """A snapshot of *loop*'s run now."""
    plain = [s for k, s in loop.state.items() if k[1] < 0]
    running = tuple(_name(k) for k in loop.in_flight.values() if loop.state[k] is TaskState.RUNNING)
    now = loop.r.clock.now()
    waiting = tuple(
        Wait(
            _name(key),
            "sensing" if loop.state[key] is TaskState.SENSING else "retrying",
            (due - now).total_seconds(),
        )
        for due, key in sorted(loop.waiting)
    )
    return Progress(
        loop.run_rec.run_id,
        len(loop.dag),
        sum(1 for s in plain if s in _DONE),
        sum(1 for s in plain if s in FAILURES),
        running,
        waiting,
    )
