"""Pools and slot claims in the store, on SQLite and PostgreSQL: pools made, listed and deleted,
claims granted atomically however many runners ask at once, and the claims of runners that lost
their lease, or died, no longer counted."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rota.errors import PoolError
from rota.store.base import Liveness, SlotRequest
from rota.store.sql import SqlStore, open_store

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
_ids = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rota.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    with open_store(url) as s:
        yield s


def _run(store: SqlStore, run_id: str, owner: str, beat: datetime = NOW) -> None:
    """A run of one task whose lease *owner* holds, renewed at *beat*."""
    store.create_run(run_id, "f", {}, [], NOW)
    assert store.acquire(run_id, owner, expect=None, at=beat)


def _want(store: SqlStore, run_id: str, n: int, pool: str = "gpu") -> list[SlotRequest]:
    from rota.store.base import NewAttempt

    new = [NewAttempt(run_id, f"t{next(_ids)}", 1, "python", "h") for _ in range(n)]
    recs = store.add_attempts([], new, at=NOW)
    return [SlotRequest(r.id, run_id, pool, 1, 1, NOW) for r in recs]


def _live(me: str, *, dead: Callable[[str], bool] = lambda o: False) -> Liveness:
    return Liveness(me, NOW - timedelta(seconds=30), dead)


def test_default_pool_is_there_with_128_slots_and_pools_are_made_resized_and_deleted(
    store: SqlStore,
) -> None:
    (default,) = store.pools(_live(""))
    assert (default.name, default.slots, default.running, default.open) == (
        "default_pool", 128, 0, 128,
    )  # fmt: skip
    store.set_pool("gpu", 2, description="two cards", at=NOW)
    store.set_pool("gpu", 4, at=NOW)  # resized: the description stays
    store.set_pool("any", -1, at=NOW)
    found = {p.name: p for p in store.pools(_live(""))}
    assert (found["gpu"].slots, found["gpu"].description) == (4, "two cards")
    assert found["any"].open is None  # no limit
    store.delete_pool("any", _live(""))
    assert [p.name for p in store.pools(_live(""))] == ["default_pool", "gpu"]


@pytest.mark.parametrize(
    ("name", "slots", "message"),
    [
        ("two words", 1, "invalid pool name 'two words'"),
        ("gpu", -2, "slots must be a whole number from 0 to 2147483647, or -1 for no limit"),
        ("gpu", 2**31, "got 2147483648"),
    ],
)
def test_a_bad_pool_is_refused_and_nothing_is_written(
    store: SqlStore, name: str, slots: int, message: str
) -> None:
    with pytest.raises(PoolError, match=message):
        store.set_pool(name, slots, at=NOW)
    assert [p.name for p in store.pools(_live(""))] == ["default_pool"]


def test_default_pool_a_missing_pool_and_a_pool_in_use_cannot_be_deleted(
    store: SqlStore,
) -> None:
    with pytest.raises(PoolError, match="default_pool cannot be deleted"):
        store.delete_pool("default_pool", _live(""))
    with pytest.raises(PoolError, match="no pool named 'gpu'"):
        store.delete_pool("gpu", _live(""))
    store.set_pool("gpu", 1, at=NOW)
    _run(store, "r1", "me")
    wanted = _want(store, "r1", 2)
    got = store.claim_slots("r1", wanted, release=[], free=2, live=_live("me"), at=NOW)
    assert list(got.granted) == [wanted[0].attempt_id]
    with pytest.raises(PoolError, match=r"in use \(1 attempts hold its slots, 1 wait for them\)"):
        store.delete_pool("gpu", _live(""))
    (gpu,) = [p for p in store.pools(_live("")) if p.name == "gpu"]
    assert (gpu.running, gpu.waiting, gpu.open) == (1, 1, 0)


def test_claims_follow_priority_across_runs_and_a_run_takes_what_it_is_granted(
    store: SqlStore,
) -> None:
    store.set_pool("gpu", 1, at=NOW)
    _run(store, "low", "runner-a")
    _run(store, "high", "runner-b")
    (low,) = _want(store, "low", 1)
    (high,) = _want(store, "high", 1)
    high = SlotRequest(high.attempt_id, "high", "gpu", 1, 50, NOW)
    first = store.claim_slots("low", [low], release=[], free=1, live=_live("runner-a"), at=NOW)
    assert dict(first.granted) == {low.attempt_id: first.granted[low.attempt_id]}
    # the slot is held: the better claim waits, and the holder learns it may not hand it on
    second = store.claim_slots("high", [high], release=[], free=1, live=_live("runner-b"), at=NOW)
    assert second.granted == {}
    again = store.claim_slots("low", [], release=[], free=1, live=_live("runner-a"), at=NOW)
    assert not again.contention.may_hand_on("gpu", "", (-1, NOW))
    seq = first.granted[low.attempt_id]
    store.claim_slots("low", [], release=[seq], free=1, live=_live("runner-a"), at=NOW)
    third = store.claim_slots("high", [high], release=[], free=1, live=_live("runner-b"), at=NOW)
    assert list(third.granted) == [high.attempt_id]


def test_claims_of_a_released_lease_a_stale_lease_or_a_dead_runner_do_not_count(
    store: SqlStore,
) -> None:
    store.set_pool("gpu", 1, at=NOW)
    _run(store, "me-run", "me")

    def dead(owner: str) -> bool:
        return owner == "corpse"

    for run_id, owner in (("gone", "ghost"), ("stale", "sleepy"), ("dead", "corpse")):
        beat = NOW - timedelta(minutes=5) if run_id == "stale" else NOW
        _run(store, run_id, owner, beat)
        (w,) = _want(store, run_id, 1)
        got = store.claim_slots(run_id, [w], release=[], free=1, live=_live(owner), at=beat)
        assert list(got.granted) == [w.attempt_id], run_id
        (mine,) = _want(store, "me-run", 1)
        live = _live("me", dead=dead)
        if run_id == "gone":
            store.release(run_id, owner)  # the runner ended: its lease is given up
        got = store.claim_slots("me-run", [mine], release=[], free=1, live=live, at=NOW)
        assert list(got.granted) == [mine.attempt_id], run_id  # the other's slot came back
        store.release_slots("me-run", "me")


def test_a_runner_driving_two_runs_keeps_their_claims_apart(store: SqlStore) -> None:
    store.set_pool("gpu", 2, at=NOW)
    _run(store, "one", "same")
    _run(store, "two", "same")
    a, b = _want(store, "one", 1)[0], _want(store, "two", 1)[0]
    first = store.claim_slots("one", [a], release=[], free=1, live=_live("same"), at=NOW)
    assert list(first.granted) == [a.attempt_id]
    got = store.claim_slots("two", [b], release=[], free=1, live=_live("same"), at=NOW)
    assert list(got.granted) == [b.attempt_id]
    (gpu,) = [p for p in store.pools(_live("")) if p.name == "gpu"]
    assert gpu.running == 2


def test_runners_claiming_at_once_never_hold_more_slots_than_the_pool_has(url: str) -> None:
    """Six runners file a claim on a free one-slot pool at the same moment, twenty times: each
    time exactly one is granted (without the pass's lock, several are)."""
    runners, rounds = 6, 20
    with open_store(url) as setup:
        setup.set_pool("gpu", 1, at=NOW)
        for i in range(runners):
            _run(setup, f"r{i}", f"runner-{i}")
    start = threading.Barrier(runners)
    grants: list[list[int]] = [[] for _ in range(rounds)]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with open_store(url) as s:
                live = _live(f"runner-{i}")
                for n in range(rounds):
                    (w,) = _want(s, f"r{i}", 1)
                    start.wait(60)
                    got = s.claim_slots(f"r{i}", [w], release=[], free=1, live=live, at=NOW)
                    if got.granted:
                        grants[n].append(i)
                    start.wait(60)  # everyone asked; now give everything back
                    s.release_slots(f"r{i}", f"runner-{i}")
        except BaseException as err:  # reported below
            errors.append(err)
            start.abort()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(runners)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert [len(g) for g in grants] == [1] * rounds, grants
