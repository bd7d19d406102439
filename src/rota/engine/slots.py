"""Pools, priorities and limits in the run loop: which ready tasks may be dispatched now.

A ready task is dispatched only once its claim on its pool's slots is granted by the store
(:meth:`~rota.store.base.Store.claim_slots`, ordered and decided by
:mod:`rota.model.allocation`), so pools, and a scheduler's ``--parallelism``, hold across every
run and every scheduler that share the store. A claim is given back when its attempt's outcome
arrives (at the next pass) and, at the latest, with the attempt's next state change, which drops
it in the same transaction. A runner that dies gives its claims back when its run's lease does:
they stop counting as soon as the lease is taken over, released, or older than ``stale_after``,
or its owner is provably dead (same host, process gone).

The loop calls :meth:`SlotBook.claim` when something changed (tasks became ready, slots came
back), and every ``poll_every`` seconds while its claims wait for slots that other runs hold.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from rota.errors import PoolError
from rota.model.allocation import Allocation
from rota.model.dag import Dag
from rota.model.pools import UNLIMITED
from rota.model.schedule import Clock
from rota.store.base import Liveness, RunRecord, SlotRequest, Store

REQUEST_WINDOW: Final = 64
"""Claims a run files beyond what it can dispatch now: enough for a task that cannot run yet
(its pool is full) not to keep smaller or less urgent ones from running; few enough that the
store does not hold one claim per element of a 10,000-way map."""

SLOT_POLL: Final = 1.0
"""Seconds between passes while claims wait for slots another run holds."""


@dataclass(frozen=True, slots=True)
class SlotGroup:
    """A limit on task slots shared by several runs: a scheduler's ``--parallelism``.

    Attributes:
        name: the group (the scheduler's runner id); claims of one group count together.
        limit: the most attempts of the group queued at a worker or running at once.
    """

    name: str
    limit: int


class SlotBook:
    """One run's claims on slots, and when the next allocation pass is due.

    Args:
        store: where claims are filed and granted.
        run: the run being driven.
        owner: the runner's id (the run's lease holder).
        clock: the runner's clock (stale leases are judged by it).
        stale_after: a lease older than this no longer holds claims.
        is_dead: whether a runner id names a process known to be gone.
        group: the scheduler-wide limit the run's attempts count against, if any.
        poll_every: seconds between passes while claims wait.
    """

    def __init__(
        self,
        store: Store,
        run: RunRecord,
        owner: str,
        clock: Clock,
        stale_after: timedelta,
        is_dead: Callable[[str], bool],
        group: SlotGroup | None = None,
        poll_every: float = SLOT_POLL,
    ) -> None:
        self._store = store
        self._run_id = run.run_id
        self._run_date = run.logical_date or run.created_at
        self._owner = owner
        self._clock = clock
        self._stale_after = stale_after
        self._is_dead = is_dead
        self._group = group
        self._poll_every = poll_every
        self._released: list[int] = []
        self._changed = True
        self._waiting = False
        self._last = -float("inf")

    def request(self, attempt_id: int, pool: str, pool_slots: int, priority: int) -> SlotRequest:
        """The claim of one attempt of this run."""
        group = self._group
        return SlotRequest(
            attempt_id, self._run_id, pool, pool_slots, priority, self._run_date,
            group.name if group else "", group.limit if group else None,
        )  # fmt: skip

    def changed(self) -> None:
        """Note that tasks became ready: the next pass is due at once."""
        self._changed = True

    def release(self, attempt_id: int) -> None:
        """Give back *attempt_id*'s slots (its outcome arrived) at the next pass."""
        self._released.append(attempt_id)
        self._changed = True

    def due(self) -> bool:
        """Whether a pass is worth making now."""
        return self._changed or time.monotonic() - self._last >= self._poll_every

    def wait_hint(self) -> float | None:
        """Seconds until a pass is due while claims wait for other runs' slots (None: no wait)."""
        if not self._waiting:
            return None
        return max(0.0, self._poll_every - (time.monotonic() - self._last))

    def claim(self, wanted: Sequence[SlotRequest], free: int) -> Allocation:
        """One pass: file *wanted* (in priority order), give back what ended, take what is
        granted, with *free* attempts this run can dispatch now."""
        now = self._clock.now()
        live = Liveness(self._owner, now - self._stale_after, self._is_dead)
        alloc = self._store.claim_slots(
            wanted, release=self._released, free=free, live=live, at=now
        )
        self._released = []
        self._changed = False
        self._last = time.monotonic()
        self._waiting = len(alloc.granted) + len(alloc.refused) < len(wanted)
        return alloc

    def flush(self, free: int) -> None:
        """Give back what ended now, filing nothing (before the run ends, or waits long)."""
        if self._released:
            self.claim((), free)


def check_pools(store: Store, dag: Dag, at: datetime) -> None:
    """Refuse a flow whose tasks name a pool that does not exist, or need more slots than their
    pool has, before a run of it is made (``rota run``, ``rota trigger``).

    Raises:
        PoolError: naming the first such task and what to do.
    """
    sizes = {p.name: p.slots for p in store.pools(Liveness("", at))}
    for tid in dag.order:
        use = dag.tasks[tid].pool
        size = sizes.get(use.pool)
        if size is None:
            raise PoolError(
                f"task {tid!r} uses pool {use.pool!r}, which does not exist "
                f"(create it: rota pools set {use.pool} N)"
            )
        if size != UNLIMITED and 0 < size < use.slots:
            raise PoolError(
                f"task {tid!r} needs {use.slots} slots of pool {use.pool!r}, which has {size} "
                f"(rota pools set {use.pool} {use.slots})"
            )
