"""The runner against real stores (a SQLite file and a PostgreSQL server) and real executors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rota import Flow, PythonTask, Skip, flow, task
from rota.engine.report import RunSummary
from rota.engine.runner import FlowRef, Progress, Runner
from rota.executors.base import Executor
from rota.executors.pool import LocalPoolExecutor
from rota.executors.threads import InProcessExecutor, ThreadExecutor
from rota.model.dag import Dag
from rota.model.schedule import SystemClock
from rota.model.states import RunState, TaskState
from rota.store.base import Store
from rota.store.sql import open_store
from rota.testing import output_of


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'rota.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    s = open_store(url)
    yield s
    s.close()


def _run(store: Store, dag: Dag, tmp_path: Path, executor: Executor | None = None) -> RunSummary:
    ex = executor or InProcessExecutor()
    try:
        return Runner(store, ex, home=tmp_path, clock=SystemClock()).run(dag, FlowRef(dag.name))
    finally:
        ex.close()


@task
def number(n: int) -> int:
    return n


@task
def total(xs: list[int], extra: dict[str, int]) -> int:
    return sum(xs) + sum(extra.values())


@flow
def sums(n: int = 4) -> None:
    parts = [number(i) for i in range(n)]
    total(parts, {"a": number(100), "b": number(1000)})


def test_data_edges_lists_and_dicts_and_every_state_committed(store: Store, tmp_path: Path) -> None:
    summary = _run(store, sums.build({"n": 4}), tmp_path)
    assert summary.state is RunState.SUCCESS
    assert summary.run.started_at is not None and summary.run.ended_at is not None
    assert {t.state for t in summary.tasks.values()} == {TaskState.SUCCESS}
    assert output_of(summary, "total") == 0 + 1 + 2 + 3 + 1100
    for t in summary.tasks.values():
        a = t.latest
        stamps = [a.queued_at, a.dispatched_at, a.started_at, a.finished_at, a.committed_at]
        assert all(s is not None for s in stamps), (t.task_id, stamps)
        assert stamps == sorted(stamps), (t.task_id, stamps)  # type: ignore[type-var]
        assert all(v is not None and v >= 0 for v in t.waits().values())


def fail() -> None:
    raise RuntimeError("broken")


def ok() -> str:
    return "ok"


def test_failure_and_trigger_rules(store: Store, tmp_path: Path) -> None:
    with Flow("rules") as f:
        a = PythonTask("a", fail)
        b = PythonTask("b", ok)
        c = PythonTask("c", ok)
        cleanup = PythonTask("cleanup", ok, trigger_rule="all_done")
        alert = PythonTask("alert", ok, trigger_rule="one_failed")
        happy = PythonTask("happy", ok, trigger_rule="none_failed")
        side = PythonTask("side", ok)
        a >> b >> c
        [a, side] >> cleanup
        a >> alert
        side >> happy
    summary = _run(store, f.build(), tmp_path)
    states = {tid: t.state for tid, t in summary.tasks.items()}
    assert states == {
        "a": TaskState.FAILED,
        "b": TaskState.UPSTREAM_FAILED,
        "c": TaskState.UPSTREAM_FAILED,
        "cleanup": TaskState.SUCCESS,
        "alert": TaskState.SUCCESS,
        "happy": TaskState.SUCCESS,
        "side": TaskState.SUCCESS,
    }
    assert summary.state is RunState.FAILED and summary.exit_code == 1
    err = summary.tasks["a"].latest
    assert err.error_type == "RuntimeError" and err.error_message == "broken"
    assert err.error_traceback is not None and "in fail" in err.error_traceback
    assert summary.tasks["b"].attempts == 0  # never started


def skipper() -> None:
    raise Skip("nothing to do")


def test_skip_short_circuits_downstream(store: Store, tmp_path: Path) -> None:
    with Flow("skips") as f:
        s = PythonTask("s", skipper)
        d = PythonTask("d", ok)
        n = PythonTask("n", ok, trigger_rule="none_failed")
        s >> d
        s >> n
    summary = _run(store, f.build(), tmp_path)
    states = {tid: t.state for tid, t in summary.tasks.items()}
    assert states == {"s": TaskState.SKIPPED, "d": TaskState.SKIPPED, "n": TaskState.SUCCESS}
    assert summary.state is RunState.SUCCESS


@pytest.mark.parametrize("kind", ["threads", "local"])
def test_parallel_executors_run_a_wide_flow(kind: str, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'rota.db'}")
    ex: Executor = ThreadExecutor(4) if kind == "threads" else LocalPoolExecutor(2, str(tmp_path))
    seen: list[Progress] = []
    try:
        runner = Runner(store, ex, home=tmp_path, clock=SystemClock(), on_progress=seen.append)
        summary = runner.run(sums.build({"n": 200}), FlowRef("sums"))
    finally:
        ex.close()
        store.close()
    assert summary.state is RunState.SUCCESS
    assert len(summary.tasks) == 203
    assert seen and seen[-1].done == 203 and seen[-1].remaining == 0
