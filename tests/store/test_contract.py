"""The Store contract: every implementation passes this one suite (add new backends to BACKENDS).

SQLite runs on a real file in tmp_path; PostgreSQL on a real server (tests/conftest.py), one fresh
database per test.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import threading
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, inspect, text

from rota.errors import (
    ConcurrentUpdate,
    InvalidTransition,
    LeaseLost,
    NotFound,
    RunExists,
    StoreError,
)
from rota.model.states import RunState, TaskState, task_successors
from rota.store.base import (
    ATTEMPT_FIELDS,
    AttemptRecord,
    Change,
    Claim,
    Lease,
    NewAttempt,
    NewTask,
    RunChange,
    RunRecord,
    RunTiming,
)
from rota.store.connect import HEAD_REVISION, MIGRATIONS_DIR
from rota.store.sql import SqlStore, open_store
from rota.store.tables import metadata

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

T0 = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
PLUS2 = timezone(timedelta(hours=2))
_run_ids = itertools.count()

# Run states a run can be driven to from queued, and how (run transitions mirror task ones).
RUN_PATHS: dict[RunState, list[RunState]] = {
    RunState.QUEUED: [],
    RunState.RUNNING: [RunState.RUNNING],
    RunState.SUCCESS: [RunState.RUNNING, RunState.SUCCESS],
    RunState.FAILED: [RunState.FAILED],
    RunState.INTERRUPTED: [RunState.RUNNING, RunState.INTERRUPTED],
}
RUN_EDGES = [
    (RunState.QUEUED, RunState.RUNNING),
    (RunState.QUEUED, RunState.FAILED),
    (RunState.RUNNING, RunState.SUCCESS),
    (RunState.RUNNING, RunState.FAILED),
    (RunState.RUNNING, RunState.INTERRUPTED),
    (RunState.FAILED, RunState.RUNNING),
    (RunState.INTERRUPTED, RunState.RUNNING),
    (RunState.INTERRUPTED, RunState.FAILED),
    # tasks cleared: the run is queued again for a resume
    (RunState.SUCCESS, RunState.QUEUED),
    (RunState.FAILED, RunState.QUEUED),
    (RunState.INTERRUPTED, RunState.QUEUED),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test."""
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def shared_postgres_url(postgres_database_factory: Callable[[], str]) -> str:
    """One PostgreSQL database for this module, emptied before each test (creating one is slow)."""
    return postgres_database_factory()


@pytest.fixture
def fresh_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh database of *backend*, with no tables yet."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/home/rota.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a database of *backend* holding no flows, runs or attempts."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/home/rota.db"
    url: str = request.getfixturevalue("shared_postgres_url")
    with open_store(url) as store, store.engine.begin() as conn:
        tables = (
            "task_attempts, run_graphs, run_cancels, flow_pauses, runs, flows, scheduler_locks, "
            "slot_claims"
        )
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    """An open store on an empty database."""
    with open_store(store_url) as opened:
        yield opened


def new_run(store: SqlStore, tasks: int = 1, *, at: datetime = T0) -> list[AttemptRecord]:
    """Create a run with *tasks* tasks; return their attempts."""
    run_id = f"run-{next(_run_ids)}"
    specs = [NewTask(f"t{i}", "python", f"hash{i}") for i in range(tasks)]
    store.create_run(run_id, "flow", {}, specs, at)
    return store.attempts(run_id)


def state_of(store: SqlStore, attempt: AttemptRecord) -> TaskState:
    """The stored state of *attempt* now."""
    return next(a.state for a in store.attempts(attempt.run_id) if a.id == attempt.id)


def task_path(target: TaskState) -> list[TaskState]:
    """The shortest state sequence leading from scheduled to *target* (excluding scheduled)."""
    paths: dict[TaskState, list[TaskState]] = {TaskState.SCHEDULED: []}
    todo = deque([TaskState.SCHEDULED])
    while todo:
        state = todo.popleft()
        for nxt in sorted(task_successors(state)):
            if nxt not in paths:
                paths[nxt] = [*paths[state], nxt]
                todo.append(nxt)
    return paths[target]


def drive(store: SqlStore, attempt: AttemptRecord, path: list[TaskState]) -> None:
    """Move *attempt* along *path*, one apply per step."""
    state = attempt.state
    for nxt in path:
        store.apply([Change(attempt.id, state, nxt)], at=T0)
        state = nxt


# --- runs -----------------------------------------------------------------------------------


def test_create_run_makes_a_queued_run_and_scheduled_first_attempts(store: SqlStore) -> None:
    tasks = [NewTask("extract", "python", "h1"), NewTask("train", "shell", "h2", map_index=3)]
    created = store.create_run("r1", "ml", {"lr": 0.1}, tasks, T0, flow_path="f.py", flow_hash="x")
    assert created == store.get_run("r1")
    assert (created.state, created.flow, created.flow_path, created.flow_hash) == (
        RunState.QUEUED, "ml", "f.py", "x",
    )  # fmt: skip
    assert created.started_at is None and created.ended_at is None
    rows = store.attempts("r1")
    assert [(a.task_id, a.operator, a.code_hash, a.map_index) for a in rows] == [
        ("extract", "python", "h1", -1), ("train", "shell", "h2", 3),
    ]  # fmt: skip
    assert {(a.try_number, a.state, a.committed_at) for a in rows} == {
        (1, TaskState.SCHEDULED, None)
    }
    assert rows[0].id < rows[1].id


def test_params_round_trip_as_json(store: SqlStore) -> None:
    params = {"lr": 0.25, "layers": [64, 32], "name": "naïve ✓", "opt": {"on": True, "x": None}}
    store.create_run("r1", "f", params, [], T0)
    assert store.get_run("r1").params == params


def test_timestamps_come_back_as_aware_utc(store: SqlStore) -> None:
    local = T0.astimezone(PLUS2)
    store.create_run("r1", "f", {}, [NewTask("a", "python", "h")], local)
    (attempt,) = store.attempts("r1")
    store.apply([Change(attempt.id, TaskState.SCHEDULED, TaskState.QUEUED, {"queued_at": local})],
                at=local)  # fmt: skip
    run, (attempt,) = store.get_run("r1"), store.attempts("r1")
    for stamp in (run.created_at, attempt.queued_at, attempt.committed_at):
        assert stamp == T0
        assert stamp is not None and stamp.utcoffset() == timedelta(0)


def test_naive_datetimes_are_refused_and_nothing_is_written(store: SqlStore) -> None:
    (attempt,) = new_run(store)
    naive = T0.replace(tzinfo=None)
    with pytest.raises(ValueError, match="naive"):
        store.create_run("r-naive", "f", {}, [], naive)
    with pytest.raises(ValueError, match="naive"):
        store.apply([Change(attempt.id, TaskState.SCHEDULED, TaskState.QUEUED)], at=naive)
    with pytest.raises(ValueError, match="naive"):
        store.apply([Change(attempt.id, TaskState.SCHEDULED, TaskState.QUEUED,
                            {"queued_at": naive})], at=T0)  # fmt: skip
    assert state_of(store, attempt) is TaskState.SCHEDULED
    assert [r.run_id for r in store.list_runs()] == [attempt.run_id]


def test_list_runs_newest_first_then_by_run_id(store: SqlStore) -> None:
    for run_id, flow, minutes in [("a", "f", 0), ("b", "g", 2), ("c", "f", 1), ("d", "f", 1)]:
        store.create_run(run_id, flow, {}, [], T0 + timedelta(minutes=minutes))
    assert [r.run_id for r in store.list_runs()] == ["b", "d", "c", "a"]
    assert [r.run_id for r in store.list_runs(flow="f")] == ["d", "c", "a"]
    assert [r.run_id for r in store.list_runs(flow="f", limit=2)] == ["d", "c"]
    assert store.list_runs(flow="none") == []


def test_unknown_run_raises_not_found_in_one_line(store: SqlStore) -> None:
    with pytest.raises(NotFound) as caught:
        store.get_run("nope")
    assert "nope" in str(caught.value) and "\n" not in str(caught.value)
    assert store.attempts("nope") == []


def test_duplicate_run_id_raises_store_error_and_keeps_the_first(store: SqlStore) -> None:
    store.create_run("r1", "f", {"v": 1}, [NewTask("a", "python", "h")], T0)
    with pytest.raises(StoreError, match="r1"):
        store.create_run("r1", "g", {"v": 2}, [NewTask("b", "python", "h")], T0)
    assert store.get_run("r1").params == {"v": 1}
    assert [a.task_id for a in store.attempts("r1")] == ["a"]


def test_flows_are_upserted(store: SqlStore) -> None:
    assert store.get_flow("ml") is None
    store.upsert_flow("ml", "a.py", "h1", T0)
    store.upsert_flow("ml", "b.py", "h2", T0.astimezone(PLUS2) + timedelta(seconds=1))
    flow = store.get_flow("ml")
    assert flow is not None
    assert (flow.path, flow.code_hash, flow.updated_at) == ("b.py", "h2", T0 + timedelta(seconds=1))


# --- task transitions -------------------------------------------------------------------------

TASK_EDGES = [(old, new) for old in TaskState for new in sorted(task_successors(old))]
ILLEGAL_TASK_EDGES = [
    (old, new) for old in TaskState for new in TaskState if new not in task_successors(old)
]


@pytest.mark.parametrize(("old", "new"), TASK_EDGES, ids=str)
def test_every_legal_task_transition_is_written(
    store: SqlStore, old: TaskState, new: TaskState
) -> None:
    (attempt,) = new_run(store)
    drive(store, attempt, task_path(old))
    store.apply([Change(attempt.id, old, new)], at=T0 + timedelta(hours=1))
    (after,) = store.attempts(attempt.run_id)
    assert (after.state, after.committed_at) == (new, T0 + timedelta(hours=1))


def test_illegal_task_transitions_raise_and_write_nothing(store: SqlStore) -> None:
    first, second = new_run(store, 2)
    legal = Change(first.id, TaskState.SCHEDULED, TaskState.QUEUED)
    for old, new in ILLEGAL_TASK_EDGES:
        with pytest.raises(InvalidTransition) as caught:
            store.apply([legal, Change(second.id, old, new)], at=T0)
        assert (caught.value.old, caught.value.new) == (old.value, new.value)
    assert [a.state for a in store.attempts(first.run_id)] == [TaskState.SCHEDULED] * 2


def test_fields_are_written_and_unknown_fields_refused(store: SqlStore) -> None:
    (attempt,) = new_run(store)
    fields = {
        "queued_at": T0, "dispatched_at": T0 + timedelta(seconds=1), "started_at": T0,
        "finished_at": T0.astimezone(PLUS2), "worker": "w1", "exit_code": 0, "error_type": "E",
        "error_message": "m", "error_traceback": "tb\n" * 100, "output_path": "/o",
        "output_size": 2**40, "output_length": 10_000, "log_path": "/l", "output_hash": "ab",
        "output_serializer": "json", "cache_key": "k", "cache_parts": {"code": "c"},
        "cached_from": 7, "first_poke_at": T0, "pokes": 3, "output_inline": b"\x00\xff" * 3000,
    }  # fmt: skip
    assert set(fields) == set(ATTEMPT_FIELDS)
    for bad in ({"state": "success"}, {"committed_at": T0}, {"bogus": 1}):
        with pytest.raises(ValueError, match="unknown field"):
            store.apply([Change(attempt.id, TaskState.SCHEDULED, TaskState.QUEUED, bad)], at=T0)
    assert state_of(store, attempt) is TaskState.SCHEDULED
    store.apply([Change(attempt.id, TaskState.SCHEDULED, TaskState.QUEUED, fields)], at=T0)
    (after,) = store.attempts(attempt.run_id)
    assert {name: getattr(after, name) for name in fields} == fields


def test_a_change_applies_only_from_its_expected_state(store: SqlStore) -> None:
    first, second = new_run(store, 2)
    store.apply([Change(first.id, TaskState.SCHEDULED, TaskState.QUEUED)], at=T0)
    batch = [
        Change(second.id, TaskState.SCHEDULED, TaskState.QUEUED),
        Change(first.id, TaskState.SCHEDULED, TaskState.QUEUED),
    ]
    with pytest.raises(ConcurrentUpdate, match=f"attempt {first.id} is queued"):
        store.apply(batch, at=T0)
    assert [a.state for a in store.attempts(first.run_id)] == [
        TaskState.QUEUED, TaskState.SCHEDULED,
    ]  # fmt: skip


def test_a_batch_is_all_or_nothing(store: SqlStore) -> None:
    attempts = new_run(store, 4)
    drive(store, attempts[3], [TaskState.QUEUED])
    ok = [
        Change(attempts[0].id, TaskState.SCHEDULED, TaskState.QUEUED, {"queued_at": T0}),
        Change(attempts[1].id, TaskState.SCHEDULED, TaskState.SKIPPED),
        Change(attempts[2].id, TaskState.SCHEDULED, TaskState.UPSTREAM_FAILED, {"worker": "w"}),
    ]
    run_id = attempts[0].run_id
    start = RunChange(run_id, RunState.QUEUED, RunState.RUNNING, T0)
    stale = Change(attempts[3].id, TaskState.SCHEDULED, TaskState.QUEUED, {"queued_at": T0})
    with pytest.raises(ConcurrentUpdate):
        store.apply([*ok, stale], [start], at=T0)
    wrong_run = RunChange(run_id, RunState.RUNNING, RunState.SUCCESS, T0)
    with pytest.raises(ConcurrentUpdate, match="run"):
        store.apply(ok, [wrong_run], at=T0)
    after = store.attempts(run_id)
    assert [a.state for a in after[:3]] == [TaskState.SCHEDULED] * 3
    assert {a.committed_at for a in after[:3]} == {None}
    assert store.get_run(run_id).state is RunState.QUEUED
    store.apply(ok, [start], at=T0)
    assert [a.state for a in store.attempts(run_id)][:3] == [c.new for c in ok]


def test_one_attempt_may_move_twice_in_one_batch(store: SqlStore) -> None:
    (attempt,) = new_run(store)
    store.apply(
        [
            Change(attempt.id, TaskState.SCHEDULED, TaskState.QUEUED, {"queued_at": T0}),
            Change(attempt.id, TaskState.QUEUED, TaskState.RUNNING, {"worker": "w"}),
            Change(attempt.id, TaskState.RUNNING, TaskState.SUCCESS, {"output_size": 1}),
        ],
        at=T0,
    )
    (after,) = store.attempts(attempt.run_id)
    assert (after.state, after.queued_at, after.worker, after.output_size) == (
        TaskState.SUCCESS, T0, "w", 1,
    )  # fmt: skip


def test_an_empty_apply_writes_nothing(store: SqlStore) -> None:
    store.apply([], at=T0)
    assert store.list_runs() == []


def test_racing_writers_move_each_attempt_once(store: SqlStore, store_url: str) -> None:
    attempts, writers = new_run(store, 25), 4
    won: list[list[int]] = [[] for _ in range(writers)]
    failures: list[BaseException] = []
    start = threading.Barrier(writers)

    def claim_all(number: int, mine: SqlStore) -> None:
        try:
            start.wait()
            for attempt in attempts:
                change = Change(attempt.id, TaskState.SCHEDULED, TaskState.QUEUED,
                                {"worker": f"w{number}"})  # fmt: skip
                try:
                    mine.apply([change], at=T0)
                    won[number].append(attempt.id)
                except ConcurrentUpdate:
                    pass
        except BaseException as err:  # reported below: a thread's exception would be lost
            failures.append(err)

    stores = [open_store(store_url) for _ in range(writers)]
    threads = [threading.Thread(target=claim_all, args=(n, s)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for opened in stores:
        opened.close()
    assert failures == []
    assert sorted(itertools.chain(*won)) == [a.id for a in attempts]
    workers = {a.id: a.worker for a in store.attempts(attempts[0].run_id)}
    assert workers == {i: f"w{n}" for n, ids in enumerate(won) for i in ids}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(st.booleans(), st.sampled_from(TaskState), st.sampled_from(TaskState)),
        max_size=12,
    )
)
def test_the_store_agrees_with_the_state_machine(
    store: SqlStore, steps: list[tuple[bool, TaskState, TaskState]]
) -> None:
    (attempt,) = new_run(store)
    model = TaskState.SCHEDULED
    for from_model, drawn_expect, drawn_new in steps:
        expect, new, successors = drawn_expect, drawn_new, sorted(task_successors(model))
        if from_model and successors:  # about half the steps try a legal move from the true state
            expect, new = model, successors[list(TaskState).index(new) % len(successors)]
        change = Change(attempt.id, expect, new)
        if new not in task_successors(expect):
            with pytest.raises(InvalidTransition):
                store.apply([change], at=T0)
        elif expect is not model:
            with pytest.raises(ConcurrentUpdate):
                store.apply([change], at=T0)
        else:
            store.apply([change], at=T0)
            model = new
        assert state_of(store, attempt) is model


# --- run transitions --------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), RUN_EDGES, ids=str)
def test_every_legal_run_transition_stamps_start_and_end(
    store: SqlStore, old: RunState, new: RunState
) -> None:
    run_id = new_run(store)[0].run_id
    state, at = RunState.QUEUED, T0
    for nxt in RUN_PATHS[old]:
        at += timedelta(minutes=1)
        store.apply([], [RunChange(run_id, state, nxt, at)], at=at)
        state = nxt
    before = store.get_run(run_id)
    later = at + timedelta(minutes=1)
    store.apply([], [RunChange(run_id, old, new, later)], at=later)
    run = store.get_run(run_id)
    assert run.state is new
    if new is RunState.RUNNING:
        assert run.started_at == (before.started_at or later)
        assert run.ended_at is None
    elif new is RunState.QUEUED:  # queued again: its times stay until it runs again
        assert (run.started_at, run.ended_at) == (before.started_at, before.ended_at)
    else:
        assert (run.started_at, run.ended_at) == (before.started_at, later)


def test_illegal_or_stale_run_transitions_write_nothing(store: SqlStore) -> None:
    run_id = new_run(store)[0].run_id
    with pytest.raises(InvalidTransition):
        store.apply([], [RunChange(run_id, RunState.QUEUED, RunState.SUCCESS, T0)], at=T0)
    with pytest.raises(ConcurrentUpdate, match="is queued, expected running"):
        store.apply([], [RunChange(run_id, RunState.RUNNING, RunState.SUCCESS, T0)], at=T0)
    with pytest.raises(ConcurrentUpdate, match="missing"):
        store.apply([], [RunChange("ghost", RunState.RUNNING, RunState.SUCCESS, T0)], at=T0)
    assert store.get_run(run_id).state is RunState.QUEUED


# --- further attempts and the run lease --------------------------------------------------------


def test_add_attempts_moves_the_old_and_inserts_the_next_in_one_transaction(
    store: SqlStore,
) -> None:
    (first,) = new_run(store)
    drive(store, first, task_path(TaskState.RUNNING))
    retry_at = T0 + timedelta(seconds=30)
    change = Change(first.id, TaskState.RUNNING, TaskState.UP_FOR_RETRY, {"error_type": "E"})
    nxt = NewAttempt(first.run_id, "t0", 2, "python", "hash0", not_before=retry_at)
    (second,) = store.add_attempts([change], [nxt], at=T0)
    assert (second.try_number, second.state, second.not_before) == (
        2,
        TaskState.SCHEDULED,
        retry_at,
    )
    rows = store.attempts(first.run_id)
    assert [(a.try_number, a.state) for a in rows] == [
        (1, TaskState.UP_FOR_RETRY), (2, TaskState.SCHEDULED),
    ]  # fmt: skip
    # the same try again: refused, and the accompanying change is rolled back with it
    third = NewAttempt(first.run_id, "t0", 2, "python", "hash0")
    stale = Change(second.id, TaskState.SCHEDULED, TaskState.QUEUED)
    with pytest.raises(StoreError, match="exists already"):
        store.add_attempts([stale], [third], at=T0)
    assert state_of(store, second) is TaskState.SCHEDULED
    # a change that does not match writes nothing, not even the new attempt
    with pytest.raises(ConcurrentUpdate):
        store.add_attempts([change], [NewAttempt(first.run_id, "t0", 3, "python", "h")], at=T0)
    assert len(store.attempts(first.run_id)) == 2


def test_a_cleared_attempt_keeps_when_it_was_cleared(store: SqlStore) -> None:
    (first,) = new_run(store)
    drive(store, first, task_path(TaskState.FAILED))
    cleared = datetime(2024, 3, 1, 14, 0, tzinfo=PLUS2)
    (second,) = store.add_attempts(
        [], [NewAttempt(first.run_id, "t0", 2, "python", "hash0", cleared_at=cleared)], at=T0
    )
    assert second.cleared_at == cleared and second.cleared_at.tzinfo is UTC
    assert [a.cleared_at for a in store.attempts(first.run_id)] == [None, cleared]


def test_the_lease_is_conditional(store: SqlStore) -> None:
    run_id = new_run(store)[0].run_id
    assert store.acquire(run_id, "host:1:a", expect=None, at=T0)
    assert not store.acquire(run_id, "host:2:b", expect=None, at=T0)  # taken
    later = T0 + timedelta(seconds=5)
    assert store.heartbeat(run_id, "host:1:a", later)
    assert not store.heartbeat(run_id, "host:2:b", later)
    run = store.get_run(run_id)
    assert (run.owner, run.heartbeat_at) == ("host:1:a", later)
    # a takeover names the owner it replaces; only one of two racers wins
    assert store.acquire(run_id, "host:2:b", expect="host:1:a", at=later)
    assert not store.acquire(run_id, "host:3:c", expect="host:1:a", at=later)
    assert not store.heartbeat(run_id, "host:1:a", later)  # the old owner learns it lost
    store.release(run_id, "host:1:a")  # not the owner: no effect
    assert store.get_run(run_id).owner == "host:2:b"
    store.release(run_id, "host:2:b")
    assert store.get_run(run_id).owner is None


def _claim_of(store: SqlStore, run_id: str) -> Claim:
    run = store.get_run(run_id)
    return Claim(run_id, run.owner, run.heartbeat_at)


def test_a_claim_wins_only_while_the_run_is_as_it_was_seen(store: SqlStore) -> None:
    run_id = new_run(store)[0].run_id
    seen = _claim_of(store, run_id)  # no owner, no heartbeat
    assert store.claim_run(seen, "sched-a", T0)
    assert not store.claim_run(seen, "sched-b", T0)  # the second of two racers loses
    owned = _claim_of(store, run_id)
    assert (owned.owner, owned.heartbeat_at) == ("sched-a", T0)
    # the owner renewed after a watcher looked: the watcher's claim fails and changes nothing
    assert store.heartbeat(run_id, "sched-a", T0 + timedelta(seconds=1))
    assert not store.claim_run(owned, "sched-b", T0 + timedelta(seconds=2))
    assert store.get_run(run_id).owner == "sched-a"
    # taken over from the owner as last seen
    assert store.claim_run(_claim_of(store, run_id), "sched-b", T0 + timedelta(seconds=3))
    assert store.get_run(run_id).owner == "sched-b"
    # a finished run is never claimed
    store.release(run_id, "sched-b")
    store.apply([], [RunChange(run_id, RunState.QUEUED, RunState.FAILED, T0)], at=T0)
    assert not store.claim_run(_claim_of(store, run_id), "sched-c", T0)


def test_claims_within_a_flow_limit_hold_across_concurrent_claimers(store_url: str) -> None:
    with open_store(store_url) as setup:
        ids = [f"lim-{i}" for i in range(6)]
        for run_id in ids:
            setup.create_run(run_id, "limited", {}, [NewTask("t", "python", "h")], T0)
        setup.create_run("other", "elsewhere", {}, [NewTask("t", "python", "h")], T0)
        assert setup.claim_run(Claim("other", None, None), "z", T0, flow_limit=1)
    barrier = threading.Barrier(len(ids))
    won: list[str] = []

    def claim(run_id: str) -> None:
        with open_store(store_url) as mine:
            barrier.wait()
            if mine.claim_run(Claim(run_id, None, None), f"s-{run_id}", T0, flow_limit=2):
                won.append(run_id)

    threads = [threading.Thread(target=claim, args=(r,)) for r in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 2, won  # another flow's owned run does not count
    with open_store(store_url) as check:
        owned = [r for r in ids if check.get_run(r).owner is not None]
        assert sorted(owned) == sorted(won)
        # a run of the flow ending frees a place
        check.release(won[0], f"s-{won[0]}")
        free = next(r for r in ids if r not in won)
        assert check.claim_run(Claim(free, None, None), "late", T0, flow_limit=2)


def test_renewing_claims_touches_only_the_claimers_runs(store: SqlStore) -> None:
    mine, theirs, unowned = (new_run(store)[0].run_id for _ in range(3))
    assert store.claim_run(Claim(mine, None, None), "me", T0)
    assert store.claim_run(Claim(theirs, None, None), "them", T0)
    later = T0 + timedelta(seconds=9)
    assert store.renew_claims("me", [mine, theirs, unowned], later) == 1
    assert store.renew_claims("me", [], later) == 0
    beats = {r: store.get_run(r).heartbeat_at for r in (mine, theirs, unowned)}
    assert beats == {mine: later, theirs: T0, unowned: None}


def test_a_write_under_a_lease_commits_only_while_it_is_held(store: SqlStore) -> None:
    (attempt,) = new_run(store)
    run_id = attempt.run_id
    assert store.acquire(run_id, "old", expect=None, at=T0)
    queue = Change(attempt.id, TaskState.SCHEDULED, TaskState.QUEUED)
    later = T0 + timedelta(seconds=3)
    store.apply([queue], at=later, lease=Lease(run_id, "old"))
    assert store.get_run(run_id).heartbeat_at == later  # the write renewed the lease
    assert store.acquire(run_id, "new", expect="old", at=later)
    run_change = RunChange(run_id, RunState.QUEUED, RunState.RUNNING, later)
    start = Change(attempt.id, TaskState.QUEUED, TaskState.RUNNING)
    with pytest.raises(LeaseLost):
        store.apply([start], [run_change], at=later, lease=Lease(run_id, "old"))
    assert state_of(store, attempt) is TaskState.QUEUED
    assert store.get_run(run_id).state is RunState.QUEUED, "nothing of the refused write"


# --- opening and migrating --------------------------------------------------------------------


def _versions(store: SqlStore) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def test_opening_again_is_idempotent_and_keeps_data(store: SqlStore, store_url: str) -> None:
    store.create_run("r1", "f", {}, [], T0)
    with open_store(store_url) as again:
        assert again.get_run("r1").run_id == "r1"
        assert _versions(again) == [HEAD_REVISION]


def test_head_revision_constant_matches_the_migrations() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def _alembic_upgrade(url: str, revision: str) -> Engine:
    """Replay the migrations on the database at *url* up to *revision*, with Alembic itself
    (a new store is made from the tables instead: store/fresh.py); its engine."""
    from alembic import command
    from alembic.config import Config

    from rota.store.connect import connect, writer

    engine = connect(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    with writer(engine).begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return engine


def test_migrated_schema_matches_the_tables(fresh_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = _alembic_upgrade(fresh_url, "head")
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


def _schema(engine: Engine) -> dict[str, object]:
    """What the database of *engine* holds, table by table, as reflection sees it (column order
    aside: a migration adds a column at the end), with its seeded rows."""
    found = inspect(engine)
    out: dict[str, object] = {}
    for name in sorted(found.get_table_names()):
        columns = {
            c["name"]: (str(c["type"]), c["nullable"], str(c.get("default")))
            for c in found.get_columns(name)
        }
        indexes = sorted(
            (i["name"] or "", tuple(map(str, i["column_names"])), i["unique"])
            for i in found.get_indexes(name)
        )
        uniques = sorted(
            (u["name"] or "", tuple(u["column_names"])) for u in found.get_unique_constraints(name)
        )
        keys = sorted(
            (f["name"] or "", tuple(f["constrained_columns"]), f["referred_table"],
             tuple(f["referred_columns"]), str(sorted(f["options"].items())))
            for f in found.get_foreign_keys(name)
        )  # fmt: skip
        primary = tuple(found.get_pk_constraint(name)["constrained_columns"])
        out[name] = (columns, indexes, uniques, keys, primary)
    with engine.connect() as conn:
        out["rows"] = (
            list(conn.execute(text("SELECT name, slots, description FROM pools"))),
            list(conn.execute(text("SELECT version_num FROM alembic_version"))),
        )
    return out


def test_a_new_store_has_exactly_the_schema_and_rows_the_migrations_make(
    fresh_url: str, backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "sqlite":
        replayed_url = f"sqlite:///{tmp_path}/replayed/rota.db"
    else:
        replayed_url = request.getfixturevalue("postgres_database_factory")()
    replayed = _alembic_upgrade(replayed_url, "head")
    with open_store(fresh_url) as made:
        assert _versions(made) == [HEAD_REVISION]
        assert "default_pool" in str(_schema(made.engine)["rows"])
        assert _schema(made.engine) == _schema(replayed)
    replayed.dispose()


def test_a_database_at_the_previous_revision_is_upgraded_keeping_its_attempts(
    store_url: str,
) -> None:
    from rota.store.connect import writer

    engine = _alembic_upgrade(store_url, "0002")
    with writer(engine).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (run_id, flow, state, params, created_at) "
                "VALUES ('old', 'f', 'failed', '{}', :at)"
            ),
            {"at": T0},
        )
        conn.execute(text("INSERT INTO task_attempts (run_id, task_id, try_number, state) "
                          "VALUES ('old', 't0', 1, 'failed')"))  # fmt: skip
    engine.dispose()
    with open_store(store_url) as upgraded:
        assert _versions(upgraded) == [HEAD_REVISION]
        (rec,) = upgraded.attempts("old")
        assert (rec.state, rec.cleared_at) == (TaskState.FAILED, None)


_OPENER = textwrap.dedent(
    """
    import pathlib, sys
    from rota.store.sql import open_store
    print("ready", flush=True)
    go = pathlib.Path(sys.argv[2])
    while not go.exists():
        pass
    open_store(sys.argv[1]).close()
    """
)


def test_processes_opening_a_fresh_database_together_all_succeed(
    fresh_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    command = [sys.executable, "-c", _OPENER, fresh_url, str(go)]
    openers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for opener in openers:  # every child has imported everything; now release them at once
        assert opener.stdout is not None and opener.stdout.readline() == "ready\n"
    go.touch()
    results = [opener.communicate(timeout=60) for opener in openers]
    assert [(o.returncode, err) for o, (_, err) in zip(openers, results, strict=True)] == [
        (0, "")
    ] * len(openers)
    with open_store(fresh_url) as store:
        assert _versions(store) == [HEAD_REVISION]
        store.create_run("r1", "f", {}, [NewTask("a", "python", "h")], T0)


# --- schedules: logical dates, the unique run key, the scheduler lock ----------------------------


def _dated(store: SqlStore, flow: str, day: int, run_type: str = "scheduled") -> RunRecord:
    start = datetime(2026, 3, day, tzinfo=UTC)
    timing = RunTiming(start, start, start + timedelta(days=1), run_type)
    return store.create_run(
        f"r{next(_run_ids)}", flow, {}, [NewTask("t", "python", "h")], T0, timing=timing
    )


def test_one_run_per_flow_and_logical_date_and_the_refusal_names_the_holder(
    store: SqlStore,
) -> None:
    first = _dated(store, "nightly", 1)
    assert first.logical_date == datetime(2026, 3, 1, tzinfo=UTC)
    assert first.data_interval_end == datetime(2026, 3, 2, tzinfo=UTC)
    with pytest.raises(RunExists) as caught:
        _dated(store, "nightly", 1)
    assert caught.value.run_id == first.run_id
    assert first.run_id in str(caught.value)
    _dated(store, "other", 1)  # another flow may use the date
    assert [r.run_id for r in store.runs_for_dates("nightly")] == [first.run_id]
    # plain runs (no logical date) never collide
    for _ in range(2):
        store.create_run(f"r{next(_run_ids)}", "nightly", {}, [], T0)
    assert len(store.list_runs("nightly")) == 3
    stored = store.get_run(first.run_id)
    assert (stored.run_type, stored.logical_date) == ("scheduled", first.logical_date)


def test_runs_for_dates_latest_logical_date_and_runs_in_states(store: SqlStore) -> None:
    runs = [_dated(store, "f", d) for d in (3, 1, 2)]
    _dated(store, "f", 9, run_type="backfill")
    window = store.runs_for_dates(
        "f", datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
    )
    assert [r.logical_date.day for r in window if r.logical_date] == [2, 3]
    assert store.latest_logical_date("f") == datetime(2026, 3, 3, tzinfo=UTC)
    assert store.latest_logical_date("f", "backfill") == datetime(2026, 3, 9, tzinfo=UTC)
    assert store.latest_logical_date("nothing") is None
    store.apply([], [RunChange(runs[0].run_id, RunState.QUEUED, RunState.RUNNING, T0)], at=T0)
    running = store.runs_in_states([RunState.RUNNING])
    assert [r.run_id for r in running] == [runs[0].run_id]
    assert len(store.runs_in_states([RunState.QUEUED], "f")) == 3


def test_the_scheduler_lock_is_held_by_one_holder_until_stale_or_released(
    store: SqlStore,
) -> None:
    assert store.take_lock("scheduler", "a", T0, stale_after=60) is None
    assert store.take_lock("scheduler", "a", T0, stale_after=60) is None  # re-entrant
    assert store.take_lock("scheduler", "b", T0 + timedelta(seconds=30), stale_after=60) == "a"
    assert store.renew_lock("scheduler", "a", T0 + timedelta(seconds=50))
    assert not store.renew_lock("scheduler", "b", T0 + timedelta(seconds=50))
    late = T0 + timedelta(seconds=200)
    assert store.take_lock("scheduler", "b", late, stale_after=60) is None  # a went stale
    assert not store.renew_lock("scheduler", "a", late)
    store.release_lock("scheduler", "a")  # not the holder: no effect
    assert store.take_lock("scheduler", "c", late, stale_after=60) == "b"
    store.release_lock("scheduler", "b")
    assert store.take_lock("scheduler", "c", late, stale_after=60) is None


def test_a_dataset_triggered_run_records_its_versions_in_its_own_transaction(
    store: SqlStore,
) -> None:
    uri = "s3://bucket/features.parquet"
    store.add_dataset_version(uri, None, "producer", "build", T0)
    store.add_dataset_version(uri, None, "producer", "build", T0)
    timing = RunTiming(T0, T0, T0, "dataset", triggered_by=(uri,))
    run = store.create_run("consumer-1", "consumer", {}, [], T0, timing=timing)
    (use,) = store.dataset_uses(uri)
    assert (use.run_id, use.task_id, use.version) == (run.run_id, "(trigger)", 2)
    with pytest.raises(RunExists):  # the same logical date again: nothing written, no use
        store.create_run("consumer-2", "consumer", {}, [], T0, timing=timing)
    assert len(store.dataset_uses(uri)) == 1


# --- finding runs as a person names them; rota resume -p; rota runs prune --------------------


def _finish(store: SqlStore, run_id: str, at: datetime, end: RunState = RunState.SUCCESS) -> None:
    store.apply([], [RunChange(run_id, RunState.QUEUED, RunState.RUNNING, at)], at=at)
    store.apply([], [RunChange(run_id, RunState.RUNNING, end, at)], at=at)


def test_run_ids_by_prefix_newest_first_case_and_wildcards_count(store: SqlStore) -> None:
    for minutes, run_id in enumerate(["2026a_1", "2026a%2", "2026b", "2026A"]):
        store.create_run(
            run_id, "f" if minutes < 2 else "g", {}, [], T0 + timedelta(minutes=minutes)
        )
    assert store.run_ids_with_prefix("2026") == ["2026A", "2026b", "2026a%2", "2026a_1"]
    assert store.run_ids_with_prefix("2026a") == ["2026a%2", "2026a_1"]  # not 2026A
    assert store.run_ids_with_prefix("2026a_") == ["2026a_1"]  # _ is no wildcard
    assert store.run_ids_with_prefix("2026a%") == ["2026a%2"]
    assert store.run_ids_with_prefix("2026", limit=2) == ["2026A", "2026b"]
    assert store.newest_run_id() == "2026A"
    assert store.newest_run_id("f") == "2026a%2"
    assert store.newest_run_id("f", [RunState.SUCCESS]) is None
    assert store.newest_run_id("none") is None
    store.upsert_flow("h", "flows/h.py", "x", T0)
    assert store.flow_names() == ["f", "g", "h"] and store.flow_names("g") == ["g"]


def test_set_run_params_keeps_the_params_and_appends_each_change(store: SqlStore) -> None:
    store.create_run("r", "f", {"a": 1}, [], T0)
    store.set_run_params("r", {"a": 2}, {"a": {"from": 1, "to": 2}}, T0)
    store.set_run_params("r", {"a": 3}, {"a": {"from": 2, "to": 3}}, T0 + timedelta(minutes=1))
    run = store.get_run("r")
    assert run.params == {"a": 3}
    assert [c["changes"]["a"]["to"] for c in run.param_changes or []] == [2, 3]
    with pytest.raises(NotFound):
        store.set_run_params("nope", {}, {}, T0)


def test_old_runs_are_the_ended_ones_before_the_cutoff_with_who_reuses_their_outputs(
    store: SqlStore,
) -> None:
    specs = [NewTask("t", "python", "h")]
    for run_id, days in (("old", 0), ("reader", 1), ("live", 0), ("new", 9)):
        store.create_run(run_id, "f", {}, specs, T0 + timedelta(days=days))
    _finish(store, "old", T0)
    _finish(store, "reader", T0 + timedelta(days=1), RunState.FAILED)
    _finish(store, "new", T0 + timedelta(days=9))
    (made,) = store.attempts("old")
    store.apply([Change(made.id, TaskState.SCHEDULED, TaskState.QUEUED)], at=T0)
    store.apply([Change(made.id, TaskState.QUEUED, TaskState.RUNNING)], at=T0)
    done = {"output_size": 100, "output_path": "x"}
    store.apply([Change(made.id, TaskState.RUNNING, TaskState.SUCCESS, done)], at=T0)
    (hit,) = store.attempts("reader")
    store.apply([Change(hit.id, TaskState.SCHEDULED, TaskState.QUEUED)], at=T0)
    cached = {"output_size": 100, "cached_from": made.id}
    store.apply([Change(hit.id, TaskState.QUEUED, TaskState.CACHED, cached)], at=T0)
    found = {c.run_id: c for c in store.old_runs(T0 + timedelta(days=5))}
    assert sorted(found) == ["old", "reader"]  # live is queued, new ended after the cutoff
    assert (found["old"].attempts, found["old"].output_bytes) == (1, 100)
    assert found["reader"].output_bytes == 0  # a cache hit's bytes are the first run's
    assert found["old"].reused_by == ("reader",) and found["reader"].reused_by == ()
    assert store.old_runs(T0 + timedelta(days=5), flow="g") == []
    assert store.delete_runs(["old", "reader"]) == 2
    assert sorted(r.run_id for r in store.list_runs()) == ["live", "new"]
    assert store.attempts("old") == []
