"""Dispatching ready tasks: the most urgent first, each with a slot of its pool.

Each step walks the ready heap from the top (highest effective priority weight, then first
come), within what the run may have in flight now (its executor's free capacity and the flow's
``max_active_tasks``). A task takes a slot the run holds idle when :meth:`SlotBook.hand_on` allows
it; the others that fit the step are claimed together in one store pass; what is not granted
waits in the heap, and idle slots nobody took go back to the store.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rota.engine.book import Key, RunBook
from rota.engine.slots import REQUEST_WINDOW, SlotBook
from rota.errors import StoreUnavailable
from rota.executors.base import AttemptOutcome, ErrorInfo
from rota.model.dag import Dag

Ready = tuple[int, int, Key]
"""A ready task in the heap: (minus its effective priority weight, arrival order, key)."""

POOL_ERROR_MRO = ("rota.errors.PoolError", "rota.errors.UserError", "builtins.Exception")


@dataclass(slots=True, eq=False)
class Dispatcher:
    """What dispatching reads and calls (given by the loop; never the loop itself).

    Args:
        book: the run's attempts (their ids claim the slots).
        dag: the run's graph (each task's pool, the flow's ``max_active_tasks``).
        ready: the loop's heap of ready tasks; *weights*: each task's effective weight.
        slots: the run's pool slots; *in_flight*: the attempts handed to the executor.
        can_dispatch: False while the store is out of reach (the writer holds what ended).
        capacity: the executor's free capacity now.
        dispatch: hands a key's attempt, holding its slots, to the executor.
        refused: fails a key's attempt that no pool can take, with the outcome given.
        give_back: gives back, through the writer, the slots no ready task took.
        now: the clock, as epoch seconds.
    """

    book: RunBook
    dag: Dag
    ready: list[Ready]
    weights: Mapping[str, int]
    slots: SlotBook
    in_flight: Mapping[int, Key]
    can_dispatch: Callable[[], bool]
    capacity: Callable[[], int]
    dispatch: Callable[[Key], None]
    refused: Callable[[Key, AttemptOutcome], None]
    give_back: Callable[[Sequence[int]], None]
    now: Callable[[], float]


def free_slots(loop: Dispatcher) -> int:
    """How many more attempts the run may dispatch now: the executor's free capacity, within
    the flow's ``max_active_tasks``; none while the store is out of reach (the writer holds what
    ended)."""
    if not loop.can_dispatch():
        return 0
    free = loop.capacity()
    limit = loop.dag.max_active_tasks
    return free if limit is None else min(free, limit - len(loop.in_flight))


def submit_ready(loop: Dispatcher) -> None:
    """Dispatch what may run now; see the module docstring."""
    free = free_slots(loop)
    need: list[Ready] = []
    attempt = loop.book.attempt
    while loop.ready and free > 0 and len(need) < free + REQUEST_WINDOW:
        item = heapq.heappop(loop.ready)
        key = item[2]
        use = loop.dag.tasks[key[0]].pool
        if loop.slots.hand_on(attempt[key].id, use.pool, use.slots, loop.weights[key[0]]):
            loop.dispatch(key)
            free -= 1
        else:
            need.append(item)
    if need and free > 0 and loop.slots.due():
        _claim(loop, need, free)
    else:
        for item in need:
            heapq.heappush(loop.ready, item)
    seqs = loop.slots.take_idle()
    if seqs:
        loop.give_back(seqs)


def _claim(loop: Dispatcher, need: list[Ready], free: int) -> None:
    """One store pass for the tasks of *need* (in priority order); dispatch what is granted."""
    attempt = loop.book.attempt
    wanted = []
    for _, _, key in need:
        use = loop.dag.tasks[key[0]].pool
        attempt_id = attempt[key].id
        wanted.append(loop.slots.request(attempt_id, use.pool, use.slots, loop.weights[key[0]]))
    try:
        got = loop.slots.claim(wanted, free)
    except StoreUnavailable:  # out of reach, or a lock that passes: they wait for the next pass
        loop.slots.missed()
        for item in need:
            heapq.heappush(loop.ready, item)
        return
    for item in need:
        key = item[2]
        attempt_id = attempt[key].id
        if attempt_id in got.granted:
            loop.dispatch(key)
        elif attempt_id in got.refused:
            refuse(loop, key, got.refused[attempt_id])
        else:
            heapq.heappush(loop.ready, item)


def refuse(loop: Dispatcher, key: Key, why: str) -> None:
    """Fail *key*'s attempt, never started, that no pool can take (no retry would help)."""
    at = loop.now()
    error = ErrorInfo("PoolError", why, mro=POOL_ERROR_MRO)
    loop.refused(key, AttemptOutcome(loop.book.attempt[key].id, False, at, at, "", error=error))
