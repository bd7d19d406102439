"""Cancel and pause: ``rota cancel`` / ``rota pause`` and the UI's buttons (rota.engine.steer)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rota import flow, task
from rota.engine.runner import FlowRef, Runner, RunnerOptions
from rota.engine.steer import CANCELLED, RunCancelled, cancel_run, set_paused
from rota.errors import UserError
from rota.executors.threads import ThreadExecutor
from rota.model.schedule import SystemClock
from rota.model.states import RunState, TaskState
from rota.store.base import Store
from rota.store.sql import open_store

GATE: dict[str, threading.Event] = {}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'rota.db'}"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    s = open_store(url)
    yield s
    s.close()


@task
def quick() -> int:
    return 1


@task
def held(x: int) -> int:
    GATE["held"].wait(60)  # never set by the test: only a cancel ends the run
    return x


@task
def after(x: int) -> int:
    return x


@flow
def stoppable():
    after(held(quick()))


def _latest(store: Store, run_id: str) -> dict[str, TaskState]:
    return {a.task_id: a.state for a in store.attempts(run_id)}


def test_a_run_no_runner_drives_is_cancelled_at_once(store: Store, tmp_path: Path) -> None:
    dag = stoppable.build({})
    runner = Runner(store, ThreadExecutor(2), home=tmp_path, clock=SystemClock())
    run = runner.create(dag, FlowRef("stoppable"))
    now = datetime.now(UTC)
    assert cancel_run(store, run.run_id, by="a test", now=now).how == "cancelled"
    assert store.get_run(run.run_id).state is RunState.FAILED
    attempts = store.attempts(run.run_id)
    assert {a.state for a in attempts} == {TaskState.SKIPPED}
    assert all(a.error_type == CANCELLED and "a test" in (a.error_message or "") for a in attempts)
    with pytest.raises(UserError, match="has ended"):
        cancel_run(store, run.run_id, by="a test", now=now)
    runner.executor.close()


def test_a_driven_run_is_cancelled_by_its_runner_at_its_next_heartbeat(
    store: Store, tmp_path: Path
) -> None:
    GATE["held"] = threading.Event()
    dag = stoppable.build({})
    options = RunnerOptions(heartbeat_every=0.2)
    runner = Runner(store, ThreadExecutor(2), home=tmp_path, clock=SystemClock(), options=options)
    run = runner.create(dag, FlowRef("stoppable"))
    raised: list[BaseException] = []

    def drive() -> None:
        try:
            runner.drive(run.run_id, dag, FlowRef("stoppable"))
        except BaseException as err:
            raised.append(err)

    thread = threading.Thread(target=drive)
    thread.start()
    deadline = time.monotonic() + 60
    while _latest(store, run.run_id).get("held") is not TaskState.RUNNING:
        assert time.monotonic() < deadline, "held never started"
        time.sleep(0.05)
    outcome = cancel_run(store, run.run_id, by="the web UI", now=datetime.now(UTC))
    assert outcome.how == "requested"  # a live runner holds the run
    thread.join(60)
    GATE["held"].set()
    runner.executor.close(cancel=True)
    assert not thread.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], RunCancelled)
    assert store.get_run(run.run_id).state is RunState.FAILED
    states = _latest(store, run.run_id)
    assert states == {"quick": TaskState.SUCCESS, "held": TaskState.FAILED,
                      "after": TaskState.SKIPPED}  # fmt: skip
    held_attempt = next(a for a in store.attempts(run.run_id) if a.task_id == "held")
    assert held_attempt.error_type == CANCELLED
    assert store.get_run(run.run_id).owner is None  # the lease is given back


def test_an_old_cancel_request_does_not_cancel_a_later_drive(store: Store, tmp_path: Path) -> None:
    dag = stoppable.build({})
    runner = Runner(store, ThreadExecutor(2), home=tmp_path, clock=SystemClock())
    run = runner.create(dag, FlowRef("stoppable"))
    store.request_cancel(run.run_id, "long ago", datetime(2020, 1, 1, tzinfo=UTC))
    GATE["held"] = threading.Event()
    GATE["held"].set()
    summary = runner.drive(run.run_id, dag, FlowRef("stoppable"))
    runner.executor.close()
    assert summary.state is RunState.SUCCESS


def test_pause_is_stored_per_flow_and_says_when_nothing_changed(store: Store) -> None:
    now = datetime.now(UTC)
    assert set_paused(store, "nightly", True, now) is True
    assert set_paused(store, "nightly", True, now) is False
    assert set(store.paused_flows()) == {"nightly"}
    assert set_paused(store, "nightly", False, now) is True
    assert store.paused_flows() == {}
    with pytest.raises(UserError):
        set_paused(store, "../etc", True, now)
