"""The batch writer when the store is out of reach, on a real PostgreSQL: it keeps its batches and
commits them, in order, once the store answers again, while telling the runner to start nothing;
it stops (LeaseExpired) before its lease could be taken over; a commit whose outcome was unknown
is recognized when it did happen; a runner that was taken over writes nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from schedhelp import runs_locked

from rota.engine.writer import BatchWriter
from rota.errors import ConcurrentUpdate, LeaseExpired, LeaseLost, StoreUnavailable
from rota.model.states import TaskState
from rota.store.base import AttemptRecord, Change, Lease, NewTask, RunRecord
from rota.store.connect import connect
from rota.store.sql import SqlStore, open_store

pytestmark = pytest.mark.postgres
ME = "runner-host:1:1.aaaaaaaaaaaa"


def _now() -> datetime:
    return datetime.now(UTC)


def _wait_for(pred: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _new_run(url: str, tasks: int = 3) -> list[AttemptRecord]:
    with open_store(url) as setup:
        setup.create_run(
            "r1", "f", {}, [NewTask(f"t{i}", "python", "h") for i in range(tasks)], _now()
        )
        assert setup.acquire("r1", ME, expect=None, at=_now())
        return setup.attempts("r1")


def _queue(rec: AttemptRecord) -> Change:
    return Change(rec.id, TaskState.SCHEDULED, TaskState.QUEUED)


def _states(store: SqlStore) -> list[TaskState]:
    return [a.state for a in store.attempts("r1")]


def test_batches_wait_for_the_store_and_commit_in_order_once_it_answers(postgres_url: str) -> None:
    a, b, _ = _new_run(postgres_url)
    with open_store(postgres_url, statement_timeout=0.2) as store:
        writer = BatchWriter(store, _now, lease=Lease("r1", ME), every=0.2, fence_after=60)
        assert writer.can_dispatch()
        with runs_locked(store):
            writer.put([_queue(a)])
            _wait_for(lambda: not writer.can_dispatch(wait=0))  # it tried and failed
            writer.put([_queue(b), Change(b.id, TaskState.QUEUED, TaskState.RUNNING)])
            time.sleep(0.5)  # several tries fail meanwhile
            assert _states(store)[:2] == [TaskState.SCHEDULED, TaskState.SCHEDULED]
        writer.flush()
        assert writer.can_dispatch()
        assert _states(store) == [TaskState.QUEUED, TaskState.RUNNING, TaskState.SCHEDULED]
        assert store.get_run("r1").owner == ME
        writer.close()


def test_a_writer_that_cannot_renew_its_lease_stops_before_it_may_be_taken_over(
    postgres_url: str,
) -> None:
    a, _, _ = _new_run(postgres_url)
    with open_store(postgres_url, statement_timeout=0.2) as store:
        writer = BatchWriter(store, _now, lease=Lease("r1", ME), every=0.1, fence_after=1.0)
        with runs_locked(store):
            writer.put([_queue(a)])
            deadline = time.monotonic() + 20
            with pytest.raises(LeaseExpired, match="not renewed"):
                while time.monotonic() < deadline:
                    assert not writer.can_dispatch(wait=0.05) or time.monotonic() < deadline
            # a try already in flight when the fence struck would still commit once the lock
            # goes (safely: its transaction checks the lease); end the thread while it holds
            with pytest.raises(LeaseExpired):
                writer.close()
        with pytest.raises(LeaseExpired):
            writer.flush()  # the lock is gone, but the writer stopped for good
        assert _states(store)[0] is TaskState.SCHEDULED, "nothing committed after it stopped"


class _CommitThenLoseTheConnection(SqlStore):
    """A real store whose connection breaks right after the database committed, *times* times:
    the client sees the error of a lost connection although the transaction is durable."""

    def __init__(self, url: str, times: int) -> None:
        super().__init__(connect(url))
        self.times = times

    def apply(self, *args: Any, **kwargs: Any) -> None:
        super().apply(*args, **kwargs)
        if self.times > 0:
            self.times -= 1
            raise StoreUnavailable("server closed the connection unexpectedly")


def test_a_commit_of_unknown_outcome_that_happened_is_not_mistaken_for_a_conflict(
    postgres_url: str,
) -> None:
    a, b, c = _new_run(postgres_url)
    store = _CommitThenLoseTheConnection(postgres_url, times=2)
    try:
        writer = BatchWriter(store, _now, lease=Lease("r1", ME), every=5, fence_after=60)
        writer.put([_queue(a), Change(a.id, TaskState.QUEUED, TaskState.RUNNING)])
        writer.flush()  # tried again, found committed by its own earlier try: no ConcurrentUpdate
        writer.put([_queue(b)])
        writer.flush()
        assert store.times == 0 and writer.can_dispatch()
        assert _states(store) == [TaskState.RUNNING, TaskState.QUEUED, TaskState.SCHEDULED]
        # a real conflict is still one
        writer.put([Change(c.id, TaskState.QUEUED, TaskState.RUNNING)])
        with pytest.raises(ConcurrentUpdate):
            writer.flush()
        assert _states(store)[2] is TaskState.SCHEDULED
    finally:
        store.close()


def test_a_runner_that_was_taken_over_writes_nothing(postgres_url: str) -> None:
    a, _, _ = _new_run(postgres_url)
    with open_store(postgres_url) as store:
        writer = BatchWriter(store, _now, lease=Lease("r1", ME), every=5, fence_after=60)
        assert store.acquire("r1", "new-owner:2:2.bbbbbbbbbbbb", expect=ME, at=_now())
        writer.put([_queue(a)])
        with pytest.raises(LeaseLost):
            writer.flush()
        assert _states(store)[0] is TaskState.SCHEDULED
        with pytest.raises(LeaseLost):
            writer.can_dispatch()


def test_an_idle_writer_renews_its_lease_before_its_own_fence(postgres_url: str) -> None:
    _new_run(postgres_url)
    with open_store(postgres_url) as store:
        # asked to beat every 60 s with a fence of 3 s: it beats every second instead
        writer = BatchWriter(store, _now, lease=Lease("r1", ME), every=60, fence_after=3)
        first = store.get_run("r1").heartbeat_at
        _wait_for(lambda: store.get_run("r1").heartbeat_at != first, timeout=20)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert writer.can_dispatch(wait=0)  # idle well past the fence: never expired
            time.sleep(0.05)
        writer.close()


class _DownThenCommitThenLose(SqlStore):
    """A real store out of reach for *down_for* seconds; its first commit after that is durable
    but looks lost; looking into it takes *slow_look* seconds; heartbeats wait for *beats*."""

    def __init__(self, url: str, down_for: float, slow_look: float) -> None:
        super().__init__(connect(url))
        self.up_at = time.monotonic() + down_for
        self.slow_look = slow_look
        self.lost = 1
        self.beats = threading.Event()
        self.beating = threading.Event()

    def apply(self, *args: Any, **kwargs: Any) -> None:
        if time.monotonic() < self.up_at:
            raise StoreUnavailable("connection refused")
        super().apply(*args, **kwargs)
        if self.lost:
            self.lost = 0
            raise StoreUnavailable("server closed the connection unexpectedly")

    def get_run(self, run_id: str) -> RunRecord:
        if not self.lost and self.slow_look:
            time.sleep(self.slow_look)
            self.slow_look = 0
        return super().get_run(run_id)

    def heartbeat(self, *args: Any, **kwargs: Any) -> bool:
        self.beating.set()
        self.beats.wait(timeout=60)
        return super().heartbeat(*args, **kwargs)


def test_a_commit_found_to_have_happened_counts_as_the_lease_renewal_it_was(
    postgres_url: str,
) -> None:
    a, _, _ = _new_run(postgres_url)
    # the commit of unknown outcome happens ~3.5 s in, is recognized ~7.5 s in: past the fence
    # counted from the start, well within it counted from that commit
    store = _DownThenCommitThenLose(postgres_url, down_for=3, slow_look=3)
    try:
        writer = BatchWriter(store, _now, lease=Lease("r1", ME), every=60, fence_after=6)
        writer.put([_queue(a)])
        assert store.beating.wait(timeout=60), "the writer never went back to its heartbeats"
        assert _states(store)[0] is TaskState.QUEUED
        assert writer.can_dispatch(wait=0), "the store answers and the lease is fresh"
        store.beats.set()
        writer.close()
    finally:
        store.beats.set()
        store.close()
