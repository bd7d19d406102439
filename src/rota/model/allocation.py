"""Who gets free slots: Airflow's scheduler rule, as a pure function over the store's claims.

Every task attempt that is ready to be dispatched files a *claim* in the store: waiting, then
held once granted, until the attempt leaves ``queued``/``running``. A runner that wants to
dispatch asks :func:`allocate` which of its waiting claims it may take now. The answer walks
**every** waiting claim, of every run and every runner, from the highest effective priority
weight down (then the oldest run's date, then the order the claims were filed), the way
Airflow's ``_executable_task_instances_to_queued`` walks scheduled task instances:

- a claim whose pool has too few open slots for it is passed over, but a smaller claim behind
  it may still fit (Airflow: "we can execute tasks with lower priority if there's enough room");
- a claim beyond its group's limit (a scheduler's ``--parallelism``: task slots across all the
  scheduler's runs) is passed over;
- a claim beyond what its runner can dispatch now (its free executor capacity) is passed over.

A slot that goes, in this walk, to another runner's claim is left for that runner: it takes it
at its next pass. So across runs and runners a lower-priority task never takes a slot that a
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


@dataclass(frozen=True, slots=True)
class Claim:
    """One attempt's claim on slots, as the store keeps it.

    Attributes:
        attempt_id: the attempt that claims.
        owner: the runner that filed it (the run's lease holder).
        pool, pool_slots: the pool and how many of its slots.
        priority: the task's effective priority weight.
        run_date: the run's logical date (its creation time without one): older runs first.
        seq: the order claims were filed in (first come, first served among equals).
        held: granted already (the attempt is queued at a worker or running).
        group: the group whose limit the claim counts against ("" for none).
        group_limit: that limit, in task slots.
        owner_free: how many more attempts the owner can dispatch now (its free capacity).
    """

    attempt_id: int
    owner: str
    pool: str
    pool_slots: int
    priority: int
    run_date: datetime
    seq: int
    held: bool = False
    group: str = ""
    group_limit: int | None = None
    owner_free: int = 0


@dataclass
class Allocation:
    """What :func:`allocate` decided for the asking runner."""

    granted: list[int] = field(default_factory=list)
    """Attempt ids whose claims it may take now, in priority order."""
    refused: dict[int, str] = field(default_factory=dict)
    """Attempt ids whose claims can never be granted, and why."""


@dataclass
class _Use:
    """Slots in use while the walk goes on."""

    pools: Counter[str] = field(default_factory=Counter)
    groups: Counter[str] = field(default_factory=Counter)
    taken: Counter[str] = field(default_factory=Counter)
    """New grants per owner in this walk."""

    def add(self, claim: Claim, *, new: bool) -> None:
        self.pools[claim.pool] += claim.pool_slots
        if claim.group:
            self.groups[claim.group] += 1
        if new:
            self.taken[claim.owner] += 1


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
    """Which of *me*'s waiting claims may be taken now; see the module docstring.

    Args:
        claims: every live claim in the store, held and waiting, of every owner.
        pools: each pool's slots (UNLIMITED for no limit).
        me: the asking runner.
        free: how many attempts *me* can dispatch now (overrides its claims' ``owner_free``).
    """
    out = Allocation()
    use = _Use()
    waiting: list[Claim] = []
    for claim in claims:
        if claim.held:
            use.add(claim, new=False)
        else:
            waiting.append(claim)
    waiting.sort(key=lambda c: (-c.priority, c.run_date, c.seq))
    for claim in waiting:
        why = refusal(claim, pools)
        if why is not None:
            if claim.owner == me:
                out.refused[claim.attempt_id] = why
            continue
        room = free if claim.owner == me else claim.owner_free
        if use.taken[claim.owner] < room and _fits(claim, pools[claim.pool], use):
            use.add(claim, new=True)
            if claim.owner == me:
                out.granted.append(claim.attempt_id)
    return out


def _fits(claim: Claim, size: int, use: _Use) -> bool:
    """Whether *claim* fits in its pool's and its group's open slots."""
    if size != UNLIMITED and use.pools[claim.pool] + claim.pool_slots > size:
        return False
    limit = claim.group_limit
    return not (claim.group and limit is not None and use.groups[claim.group] >= limit)
