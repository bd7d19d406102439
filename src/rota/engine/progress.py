"""What a run's live display shows: counts, the tasks running, and the tasks waiting for their
time (a retry's back-off, a sensor's next poke) with the seconds left.

A snapshot costs O(tasks running + tasks waiting): the counts by state are kept by the book
(:class:`~rota.engine.book.RunBook`) as changes are made, never counted over the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from rota.engine.book import Key, RunBook
from rota.engine.runner import Progress, Wait
from rota.model.states import FAILURES, TaskState

_DONE = frozenset({TaskState.SUCCESS, TaskState.CACHED, TaskState.SKIPPED})


def _name(key: Key) -> str:
    tid, index = key
    return tid if index < 0 else f"{tid}@{index}"


def progress_of(
    book: RunBook,
    total: int,
    in_flight: Iterable[Key],
    waiting: Iterable[tuple[datetime, Key]],
    now: datetime,
) -> Progress:
    """A snapshot of *book*'s run of *total* tasks now, with its keys in flight and waiting."""
    state = book.state
    running = tuple(_name(k) for k in in_flight if state[k] is TaskState.RUNNING)
    waits = tuple(
        Wait(
            _name(key),
            "sensing" if state[key] is TaskState.SENSING else "retrying",
            (due - now).total_seconds(),
        )
        for due, key in sorted(waiting)
    )
    counts = book.counts
    return Progress(
        book.run_id,
        total,
        sum(counts[s] for s in _DONE),
        sum(counts[s] for s in FAILURES),
        running,
        waits,
    )
