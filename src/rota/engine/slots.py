"""Pools, priorities and limits in the run loop: which ready tasks may be dispatched now.

A ready task is dispatched with a slot of its pool that the run holds. The run gets slots from
the store (:meth:`~rota.store.base.Store.claim_slots`, ordered and decided by
:mod:`rota.model.allocation`), so pools, and a scheduler's ``--parallelism``, hold across every
run and every scheduler that share the store. When an attempt's outcome arrives, its slot is
handed on to the run's next ready task if the run's last look at the store (at most
``poll_every`` seconds old) saw no other run's claim waiting for that pool (or group) that ranks
as high: so a chain of tasks takes one slot and no store round trip per task, and a
higher-priority task of another run still gets the slot next. A slot no ready task takes is
given back at once (through the run's writer thread). A runner that dies gives its slots back
when its run's lease does: they stop counting as soon as the lease is taken over, released, or
older than ``stale_after``, or the runner is provably dead (same host, process gone).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from rota.errors import ConfigError, PoolError
from rota.model.allocation import Contention, Rank
from rota.model.dag import Dag
from rota.model.pools import UNLIMITED
from rota.model.schedule import Clock
from rota.store.base import Liveness, RunRecord, SlotPass, SlotRequest, Store

REQUEST_WINDOW: Final = 64
"""Claims a run files beyond what it can dispatch now: enough for a task that cannot run yet
(its pool is full) not to keep smaller or less urgent ones from running; few enough that the
store does not hold one claim per element of a 10,000-way map."""

SLOT_POLL: Final = 1.0
"""Seconds between passes while claims wait for slots other runs hold; also how old a run's view
of other runs' claims may be for it to hand a slot on without asking the store."""


PARALLELISM_ENV: Final = "ROTA_PARALLELISM"
GROUP_ENV: Final = "ROTA_PARALLELISM_GROUP"
"""Set by ``rota scheduler`` in its drivers' environment: its ``--parallelism`` and its id."""


@dataclass(frozen=True, slots=True)
class SlotGroup:
    """A limit on task slots shared by several runs: a scheduler's ``--parallelism``.

    Attributes:
        name: the group (the scheduler's runner id); claims of one group count together.
        limit: the most attempts of the group holding slots at once.
    """

    name: str
    limit: int

    def environ(self) -> dict[str, str]:
        """The variables that give this group to a driver process."""
        return {PARALLELISM_ENV: str(self.limit), GROUP_ENV: self.name}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SlotGroup | None:
        """The group a scheduler gave this driver, if any.

        Raises:
            ConfigError: ROTA_PARALLELISM is not a whole number >= 1, or its group is missing.
        """
        raw, name = environ.get(PARALLELISM_ENV, "").strip(), environ.get(GROUP_ENV, "")
        if not raw:
            return None
        if not raw.isdigit() or int(raw) < 1 or not name:
            raise ConfigError(
                f"{PARALLELISM_ENV} must be a whole number >= 1 with {GROUP_ENV} set "
                f"(rota scheduler sets both for its drivers), got {raw!r}"
            )
        return cls(name, int(raw))


@dataclass(frozen=True, slots=True)
class Slot:
    """A slot the run holds: its claim's number, its pool and how many of the pool's slots."""

    seq: int
    pool: str
    pool_slots: int


class SlotBook:
    """The slots one run holds and hands on, and when it next asks the store for more.

    Args:
        store: where claims are filed and granted.
        run: the run being driven.
        owner: the runner's id (the run's lease holder).
        clock: the runner's clock (stale leases are judged by it).
        stale_after: a lease older than this no longer holds claims.
        is_dead: whether a runner id names a process known to be gone.
        group: the scheduler-wide limit the run's attempts count against, if any.
        poll_every: seconds between passes while claims wait (see SLOT_POLL).
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
        self.run_id = run.run_id
        self._run_date = run.logical_date or run.created_at
        self._owner = owner
        self._clock = clock
        self._stale_after = stale_after
        self._is_dead = is_dead
        self._group = group
        self._poll_every = poll_every
        self.in_use: dict[int, Slot] = {}
        """Attempt id -> the slot it runs with."""
        self.idle: list[Slot] = []
        """Slots whose attempt ended, not handed on yet."""
        self._seen = Contention()
        self._seen_at = -float("inf")
        self._changed = True
        self._waiting = False
        self._blind = False
        """The last pass failed: no view of other runs, so nothing is handed on."""

    def rank(self, priority: int) -> Rank:
        """The rank of a task of this run with effective weight *priority*."""
        return (-priority, self._run_date)

    def request(self, attempt_id: int, pool: str, pool_slots: int, priority: int) -> SlotRequest:
        """The claim of one attempt of this run."""
        group = self._group
        return SlotRequest(
            attempt_id, self.run_id, pool, pool_slots, priority, self._run_date,
            group.name if group else "", group.limit if group else None,
        )  # fmt: skip

    def changed(self) -> None:
        """Note that tasks became ready: the next pass is due at once."""
        self._changed = True

    def ended(self, attempt_id: int) -> None:
        """Attempt *attempt_id*'s outcome arrived: its slot is free to hand on."""
        slot = self.in_use.pop(attempt_id, None)
        if slot is not None:
            self.idle.append(slot)
            self._changed = True

    def hand_on(self, attempt_id: int, pool: str, pool_slots: int, priority: int) -> bool:
        """Give a held, idle slot to *attempt_id* if the run's fresh view allows it."""
        if not self.idle or self._blind or time.monotonic() - self._seen_at >= self._poll_every:
            return False
        group = self._group.name if self._group else ""
        if not self._seen.may_hand_on(pool, group, self.rank(priority)):
            return False
        for i, slot in enumerate(self.idle):
            if slot.pool == pool and slot.pool_slots == pool_slots:
                self.in_use[attempt_id] = self.idle.pop(i)
                return True
        return False

    def due(self) -> bool:
        """Whether a pass is worth making now."""
        return self._changed or time.monotonic() - self._seen_at >= self._poll_every

    def wait_hint(self) -> float | None:
        """Seconds until a pass is due while claims wait for other runs' slots (None: no wait)."""
        if not self._waiting:
            return None
        return max(0.0, self._poll_every - (time.monotonic() - self._seen_at))

    def claim(self, wanted: Sequence[SlotRequest], free: int) -> SlotPass:
        """One pass: give back the idle slots, file *wanted* (in priority order) and take what is
        granted, with *free* attempts this run can dispatch now."""
        now = self._clock.now()
        live = Liveness(self._owner, now - self._stale_after, self._is_dead)
        back = [slot.seq for slot in self.idle]
        got = self._store.claim_slots(
            self.run_id, wanted, release=back, free=free, live=live, at=now
        )
        self.idle = []
        by_id = {w.attempt_id: w for w in wanted}
        for attempt_id, seq in got.granted.items():
            w = by_id[attempt_id]
            self.in_use[attempt_id] = Slot(seq, w.pool, w.pool_slots)
        self._seen, self._seen_at, self._blind = got.contention, time.monotonic(), False
        self._changed = False
        self._waiting = len(got.granted) + len(got.refused) < min(len(wanted), free)
        return got

    def missed(self) -> None:
        """A pass failed (the store was out of reach): the next one is due in ``poll_every``;
        the idle slots stay idle, to be given back."""
        self._seen_at, self._blind = time.monotonic(), True
        self._changed = False
        self._waiting = True

    def take_idle(self) -> list[int]:
        """The idle slots' claim numbers, forgotten here: the caller gives them back."""
        back = [slot.seq for slot in self.idle]
        self.idle = []
        return back

    def close(self) -> None:
        """Give back every slot and claim of the run (the run ended, or stops)."""
        self.in_use.clear()
        self.idle = []
        self._store.release_slots(self.run_id, self._owner)


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
