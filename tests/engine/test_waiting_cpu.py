"""Issue 10, section 6: waiting must not burn a CPU core.

A reschedule-mode sensor between two pokes, and a retry's back-off, each keep the run waiting
5 seconds with nothing to do. The run loop must block in the executor's ``poll`` until the next
due time instead of spinning. Before the fix, the local pool's and the in-process executor's
``poll`` returned at once when no worker was busy, and the loop spun for the whole wait (a 8 s
sensor wait cost 8.5 s of CPU, hundreds of thousands of polls).

The test counts the loop's calls to ``poll`` over the whole run (a count, not a time: a loaded
machine cannot change it much); the runner's CPU seconds are printed for the record.
"""

from __future__ import annotations

import re
import resource
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from rota import Flow, PythonSensor, PythonTask, RetryPolicy
from rota.engine.runner import FlowRef, Progress, Runner
from rota.executors.base import Executor
from rota.executors.pool import LocalPoolExecutor
from rota.executors.threads import InProcessExecutor, ThreadExecutor
from rota.model.dag import Dag
from rota.model.schedule import SystemClock
from rota.model.states import RunState, TaskState
from rota.store.base import Store
from rota.store.sql import open_store

WAIT = 5.0
MAX_POLLS = 60
"""A blocking loop polls a few times per second of waiting at most (the progress line's refresh,
the sensor's and the retry's due times); a spinning one polls thousands of times a second."""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'rota.db'}")
    yield s
    s.close()


def second_poke(ctx: Any) -> bool:
    """Satisfied at the second poke (``ctx.pokes`` counts the earlier ones)."""
    return ctx.pokes >= 1


def fails_once(ctx: Any) -> str:
    if ctx.try_number == 1:
        raise RuntimeError("first try fails")
    return "second try"


def sensor_flow() -> Dag:
    with Flow("sensing") as f:
        PythonSensor("wait_for_it", second_poke, mode="reschedule", poke_interval=WAIT)
    return f.build()


def retry_flow() -> Dag:
    with Flow("retrying") as f:
        policy = RetryPolicy(max_attempts=2, delay=timedelta(seconds=WAIT))
        PythonTask("flaky", fails_once, retries=policy)
    return f.build()


class CountingPolls:
    """The executor, with its calls to ``poll`` counted."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.polls = 0

    def poll(self, timeout: float) -> Any:
        self.polls += 1
        return self.inner.poll(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def make_executor(kind: str, tmp_path: Path) -> Executor:
    if kind == "local":
        return LocalPoolExecutor(2, str(tmp_path / "logs"))
    return ThreadExecutor(2) if kind == "threads" else InProcessExecutor()


@pytest.mark.parametrize("kind", ["local", "inprocess", "threads"])
@pytest.mark.parametrize("wait", ["sensor", "retry"])
def test_waiting_blocks_in_poll_instead_of_spinning(
    store: Store, tmp_path: Path, kind: str, wait: str
) -> None:
    dag = sensor_flow() if wait == "sensor" else retry_flow()
    seen: list[Progress] = []
    ex = CountingPolls(make_executor(kind, tmp_path))
    try:
        runner = Runner(store, ex, home=tmp_path, clock=SystemClock(), on_progress=seen.append)
        cpu0 = cpu_seconds()
        summary = runner.run(dag, FlowRef(dag.name))
        print(f"{kind}/{wait}: {ex.polls} polls, {cpu_seconds() - cpu0:.2f} s of CPU")
    finally:
        ex.close()
    assert summary.state is RunState.SUCCESS
    (task,) = summary.tasks.values()
    assert task.state is TaskState.SUCCESS
    assert 0 < ex.polls <= MAX_POLLS, f"{ex.polls} calls to poll over a {WAIT:.0f} s wait"
    # the progress line showed the wait
    waits = [w for p in seen for w in p.waiting]
    assert waits, "no progress snapshot showed the wait"
    expected = "wait_for_it pokes again in" if wait == "sensor" else "flaky retrying in"
    assert all(re.fullmatch(rf"{expected} [0-5] s", w.describe()) for w in waits), waits
