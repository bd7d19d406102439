"""Who gets free slots (rota.model.allocation): Airflow's walk over every run's claims, by
priority, with pools, a scheduler's group limit and each run's free capacity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

from rota.model.allocation import Claim, Contention, allocate
from rota.model.pools import UNLIMITED

DAY = datetime(2026, 3, 1, tzinfo=UTC)
_seq = count(1)


def claim(
    attempt: int,
    run: str = "me",
    *,
    pool: str = "gpu",
    slots: int = 1,
    priority: int = 1,
    held: bool = False,
    date: datetime = DAY,
    group: str = "",
    limit: int | None = None,
    free: int = 10,
) -> Claim:
    return Claim(
        attempt, run, pool, slots, priority, date, next(_seq), held, group, limit, free
    )  # fmt: skip


def test_the_highest_priority_waiting_claim_of_any_run_gets_the_slot() -> None:
    claims = [claim(1, "me", priority=5), claim(2, "other", priority=9), claim(3, "me", priority=1)]
    got = allocate(claims, {"gpu": 1}, me="me", free=10)
    assert got.granted == []  # the one slot goes to the other run's priority-9 claim
    assert allocate(claims, {"gpu": 2}, me="me", free=10).granted == [1]
    assert allocate(claims, {"gpu": 3}, me="me", free=10).granted == [1, 3]


def test_held_slots_count_and_equal_priorities_go_to_the_older_run_then_the_first_filed() -> None:
    older = DAY - timedelta(days=1)
    claims = [
        claim(1, "other", held=True),
        claim(2, "me", priority=3),
        claim(3, "other", priority=3, date=older),
    ]
    assert allocate(claims, {"gpu": 2}, me="me", free=5).granted == []
    first = [claim(4, "other", priority=3), claim(5, "me", priority=3)]
    assert allocate(first, {"gpu": 1}, me="me", free=5).granted == []
    assert allocate(first, {"gpu": 1}, me="other", free=5).granted == [4]


def test_a_claim_too_big_for_the_open_slots_lets_a_smaller_lower_one_run() -> None:
    claims = [claim(1, "other", held=True), claim(2, priority=9, slots=2), claim(3, priority=1)]
    got = allocate(claims, {"gpu": 2}, me="me", free=5)
    assert got.granted == [3]  # Airflow: lower priority may run if there is room for it


def test_a_run_gets_no_more_than_it_can_dispatch_and_another_run_only_what_it_can() -> None:
    mine = [claim(i, priority=10 - i) for i in range(1, 5)]
    assert allocate(mine, {"gpu": 10}, me="me", free=2).granted == [1, 2]
    busy = [claim(9, "other", priority=99, free=0), *mine]
    assert allocate(busy, {"gpu": 1}, me="me", free=1).granted == [1]  # it could not take it


def test_a_group_limit_counts_held_and_new_claims_of_the_group_in_every_pool() -> None:
    claims = [
        claim(1, "a", pool="x", held=True, group="sched", limit=2),
        claim(2, "me", pool="y", priority=5, group="sched", limit=2),
        claim(3, "me", pool="y", priority=4, group="sched", limit=2),
        claim(4, "me", pool="y", priority=1),  # no group
    ]
    got = allocate(claims, {"x": 10, "y": 10}, me="me", free=10)
    assert got.granted == [2, 4]


def test_unlimited_pools_and_paused_pools() -> None:
    claims = [claim(i, slots=1000) for i in range(3)]
    assert allocate(claims, {"gpu": UNLIMITED}, me="me", free=10).granted == [0, 1, 2]
    paused = allocate(claims, {"gpu": 0}, me="me", free=10)
    assert paused.granted == [] and paused.refused == {}  # a pool of 0 slots waits


def test_claims_that_can_never_be_granted_are_refused_with_the_fix() -> None:
    claims = [claim(1, pool="nope"), claim(2, slots=3), claim(3, "other", pool="nope")]
    got = allocate(claims, {"gpu": 2}, me="me", free=10)
    assert got.granted == []
    assert got.refused == {
        1: "pool 'nope' does not exist (create it: rota pools set nope N)",
        2: "the task needs 3 slots of pool 'gpu', which has 2 (rota pools set gpu 3)",
    }


def test_what_the_walk_saw_decides_whether_a_held_slot_may_be_handed_on() -> None:
    claims = [
        claim(1, "me", held=True),
        claim(2, "other", priority=5),
        claim(3, "other", priority=8, pool="cpu", group="s", limit=1),
        claim(4, "third", pool="cpu", held=True, group="s", limit=1),
    ]
    seen = allocate(claims, {"gpu": 1, "cpu": 9}, me="me", free=1).contention
    assert seen.pool_blocked == {"gpu": (-5, DAY)}
    assert seen.group_blocked == {"s": (-8, DAY)}
    assert seen.may_hand_on("gpu", "", (-6, DAY))  # ranks above the waiting claim
    assert not seen.may_hand_on("gpu", "", (-5, DAY))  # a tie: the claim filed first goes first
    assert not seen.may_hand_on("gpu", "s", (-7, DAY))  # the group has a better claim waiting
    assert seen.may_hand_on("cpu", "", (-1, DAY))


def test_an_overfull_pool_takes_its_slots_back() -> None:
    claims = [claim(1, "me", held=True), claim(2, "me", held=True)]
    seen = allocate(claims, {"gpu": 1}, me="me", free=1).contention
    assert seen.overfull == {"gpu"}
    assert not seen.may_hand_on("gpu", "", (-100, DAY))
    assert Contention().may_hand_on("gpu", "", (0, DAY))
