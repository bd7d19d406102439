"""Dispatching ready tasks: the most urgent first, each with a slot of its pool.

Each step walks the ready heap from the top (highest effective priority weight, then first
come), within what the run may have in flight now (its executor's free capacity and the flow's
``max_active_tasks``). A task takes a slot the run holds idle when :meth:`SlotBook.hand_on` allows
it; the others that fit the step are claimed together in one store pass; what is not granted
waits in the heap, and idle slots nobody took go back to the store.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from rota.engine.book import Key
from rota.engine.ending import outcome_fields
from rota.engine.slots import REQUEST_WINDOW
from rota.errors import StoreUnavailable
from rota.executors.base import AttemptOutcome, ErrorInfo
from rota.model.states import TaskState

if TYPE_CHECKING:
    from rota.engine.loop import RunLoop

Ready = tuple[int, int, Key]
"""A ready task in the heap: (minus its effective priority weight, arrival order, key)."""

POOL_ERROR_MRO = ("rota.errors.PoolError", "rota.errors.UserError", "builtins.Exception")


def free_slots(loop: RunLoop) -> int:
    """How many more attempts *loop*'s run may dispatch now: the executor's free capacity, within
    the flow's ``max_active_tasks``; none while the store is out of reach (the writer holds what
    ended)."""
    if not loop.writer.can_dispatch():
        return 0
    free = loop.r.executor.capacity()
    limit = loop.dag.max_active_tasks
    return free if limit is None else min(free, limit - len(loop.in_flight))


def submit_ready(loop: RunLoop) -> None:
    """Dispatch what may run now; see the module docstring."""
    free = free_slots(loop)
    need: list[Ready] = []
    while loop.ready and free > 0 and len(need) < free + REQUEST_WINDOW:
        item = heapq.heappop(loop.ready)
        key = item[2]
        use = loop.dag.tasks[key[0]].pool
        if loop.slots.hand_on(loop.attempt[key].id, use.pool, use.slots, loop.weights[key[0]]):
            loop.dispatch(key)
            free -= 1
        else:
            need.append(item)
    if need and free > 0 and loop.slots.due():
        _claim(loop, need, free)
    else:
        for item in need:
            heapq.heappush(loop.ready, item)
    _give_back_idle(loop)


def _claim(loop: RunLoop, need: list[Ready], free: int) -> None:
    """One store pass for the tasks of *need* (in priority order); dispatch what is granted."""
    wanted = []
    for _, _, key in need:
        use = loop.dag.tasks[key[0]].pool
        attempt_id = loop.attempt[key].id
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
        attempt_id = loop.attempt[key].id
        if attempt_id in got.granted:
            loop.dispatch(key)
        elif attempt_id in got.refused:
            refuse(loop, key, got.refused[attempt_id])
        else:
            heapq.heappush(loop.ready, item)


def _give_back_idle(loop: RunLoop) -> None:
    """Give back, through the writer thread, the slots no ready task took."""
    seqs = loop.slots.take_idle()
    if seqs:
        store, run_id, owner = loop.r.store, loop.run_rec.run_id, str(loop.r.me)
        loop.book.hooks.append(lambda: store.release_slots(run_id, owner, seqs))
        loop.flush()


def refuse(loop: RunLoop, key: Key, why: str) -> None:
    """Fail *key*'s attempt, never started, that no pool can take (no retry would help)."""
    at = loop.r.clock.now().timestamp()
    error = ErrorInfo("PoolError", why, mro=POOL_ERROR_MRO)
    out = AttemptOutcome(loop.attempt[key].id, False, at, at, "", error=error)
    loop.finish(key, TaskState.FAILED, outcome_fields(out), out)
