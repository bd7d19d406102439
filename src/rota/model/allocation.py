"""Who gets free slots: Airflow's scheduler rule, as a pure function over the store's claims.

A run that wants to dispatch a ready task files a *claim* in the store; once granted, the claim is
*held*: a slot (``pool_slots`` of its pool) that the run keeps while an attempt uses it, and may
hand on to its next ready task (see :class:`Contention`) or give back. :func:`allocate` decides
which waiting claims are granted. It walks **every** waiting claim, of every run and every runner,
from the highest effective priority weight down (then the oldest run's date, then the order the
claims were filed), the way Airflow's ``_executable_task_instances_to_queued`` walks scheduled
task instances:

- a claim whose pool has too few open slots for it is passed over, but a smaller claim behind
  it may still fit (Airflow: "we can execute tasks with lower priority if there's enough room");
- a claim beyond its group's limit (a scheduler's ``--parallelism``: task slots across all the
  scheduler's runs) is passed over;
- a claim beyond what its run can dispatch now (its executor's free capacity) is passed over.

A slot that goes, in this walk, to another run's claim is left for that run, which takes it at
its next pass: across runs and runners a lower-priority task never takes a slot that a
higher-priority one is waiting for, which is what makes the order global.

A claim that can never be granted is refused, so that no run waits forever: its pool does not
exist, or it needs more slots than its pool has (a pool of 0 slots is paused: its claims wait).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from rota.model.pools import UNLIMITED

Rank = tuple[int, datetime]
"""Which claim goes first: (minus its priority weight, its run's date); lower first."""


@dataclass(frozen=True, slots=True)
class Claim:
    """One claim on slots, as the store keeps it.

    Attributes:
        attempt_id: the attempt it was filed for.
        run: the run that dispatches it (its executor's capacity bounds its grants).
        pool, pool_slots: the pool and how many of its slots.
        priority: the task's effective priority weight.
        run_date: the run's logical date (its creation time without one): older runs first.
        seq: the order claims were filed in (first come, first served among equals).
        held: granted already (a slot the run holds).
        group: the group whose limit the claim counts against ("" for none).
        group_limit: that limit, in task slots.
        run_free: how many more attempts the run can dispatch now (its free capacity).
    """

    attempt_id: int
    run: str
    pool: str
    pool_slots: int
    priority: int
    run_date: datetime
    seq: int
    held: bool = False
    group: str = ""
    group_limit: int | None = None
    run_free: int = 0

    @property
    def rank(self) -> Rank:
        return (-self.priority, self.run_date)


@dataclass
class Contention:
    """What a pass saw of other runs: whether a run may hand a slot it holds to its next ready
    task without asking the store.

    It may when no other run's claim that the slot could serve ranks as high: none passed over
    because the slot's pool was full, nor (in a group) because the group's limit was reached,
    and the pool does not hold more than its size (it was made smaller).
    """

    pool_blocked: dict[str, Rank] = field(default_factory=dict)
    group_blocked: dict[str, Rank] = field(default_factory=dict)
    overfull: set[str] = field(default_factory=set)

    def may_hand_on(self, pool: str, group: str, rank: Rank) -> bool:
        """Whether a held slot of *pool* may serve a task of *rank* in *group* ("" for none)."""
        if pool in self.overfull:
            return False
        other = self.pool_blocked.get(pool)
        if other is not None and not rank < other:
            return False
        other = self.group_blocked.get(group) if group else None
        return other is None or rank < other

    def note(self, blocked: dict[str, Rank], key: str, rank: Rank) -> None:
        known = blocked.get(key)
        if known is None or rank < known:
            blocked[key] = rank


@dataclass
class Allocation:
    """What :func:`allocate` decided for the asking run."""

    granted: list[int] = field(default_factory=list)
    """Attempt ids whose claims it may take now, in priority order."""
    refused: dict[int, str] = field(default_factory=dict)
    """Attempt ids whose claims can never be granted, and why."""
    contention: Contention = field(default_factory=Contention)


@dataclass
class _Use:
    """Slots in use while the walk goes on."""

    pools: Counter[str] = field(default_factory=Counter)
    groups: Counter[str] = field(default_factory=Counter)
    taken: Counter[str] = field(default_factory=Counter)
    """New grants per run in this walk."""

    def add(self, claim: Claim, *, new: bool) -> None:
        self.pools[claim.pool] += claim.pool_slots
        if claim.group:
            self.groups[claim.group] += 1
        if new:
            self.taken[claim.run] += 1


def refusal(claim: Claim, pools: Mapping[str, int]) -> str | None:
    """Why *claim* can never be granted with *pools* (name -> slots), or None."""
    size = pools.get(claim.pool)
    if size is None:
        return f"pool {claim.pool!r} does not exist (create it: rota pools set {claim.pool} N)"
    if size != UNLIMITED and 0 < size < claim.pool_slots:
        return (
            f"the task needs {claim.pool_slots} slots of pool {claim.pool!r}, which has {size} "
            f"(rota pools set {claim.pool} {claim.pool_slots})"
        )
    return None


def allocate(
    claims: Iterable[Claim], pools: Mapping[str, int], *, me: str, free: int
) -> Allocation:
    """Which of run *me*'s waiting claims may be taken now; see the module docstring.

    Args:
        claims: every live claim in the store, held and waiting, of every run.
        pools: each pool's slots (UNLIMITED for no limit).
        me: the asking run.
        free: how many attempts *me* can dispatch now (overrides its claims' ``run_free``).
    """
    out = Allocation()
    use = _Use()
    waiting: list[Claim] = []
    for claim in claims:
        if claim.held:
            use.add(claim, new=False)
        else:
            waiting.append(claim)
    out.contention.overfull = {
        p for p, n in use.pools.items() if pools.get(p, 0) != UNLIMITED and n > pools.get(p, 0)
    }
    waiting.sort(key=lambda c: (c.rank, c.seq))
    for claim in waiting:
        why = refusal(claim, pools)
        if why is not None:
            if claim.run == me:
                out.refused[claim.attempt_id] = why
            continue
        room = free if claim.run == me else claim.run_free
        if use.taken[claim.run] >= room:
            continue
        if _walk_one(claim, pools[claim.pool], use, out.contention, mine=claim.run == me):
            use.add(claim, new=True)
            if claim.run == me:
                out.granted.append(claim.attempt_id)
    return out


def _walk_one(claim: Claim, size: int, use: _Use, seen: Contention, *, mine: bool) -> bool:
    """Whether *claim* fits its pool's and group's open slots; an other run's claim that does not
    is noted as blocked there."""
    if size != UNLIMITED and use.pools[claim.pool] + claim.pool_slots > size:
        if not mine:
            seen.note(seen.pool_blocked, claim.pool, claim.rank)
        return False
    limit = claim.group_limit
    if claim.group and limit is not None and use.groups[claim.group] >= limit:
        if not mine:
            seen.note(seen.group_blocked, claim.group, claim.rank)
        return False
    return True
