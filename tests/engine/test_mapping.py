"""Dynamic mapping through the runner, on a real SQLite store and real executors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rota import flow, task, unmapped
from rota.engine.report import RunSummary
from rota.engine.runner import FlowRef, Runner
from rota.errors import DefinitionError
from rota.executors.base import Executor
from rota.executors.pool import LocalPoolExecutor
from rota.executors.threads import InProcessExecutor
from rota.model.dag import Dag
from rota.model.schedule import SystemClock
from rota.model.states import RunState, TaskState
from rota.store.sql import SqlStore, open_store
from rota.testing import output_of


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    with open_store(f"sqlite:///{tmp_path / 'rota.db'}") as s:
        yield s


def _run(store: SqlStore, dag: Dag, home: Path, ex: Executor | None = None) -> RunSummary:
    executor = ex or InProcessExecutor()
    try:
        return Runner(store, executor, home=home, clock=SystemClock()).run(dag, FlowRef(dag.name))
    finally:
        executor.close()


def _output(summary: RunSummary, tid: str) -> object:
    return output_of(summary, tid)


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def square(x: int, offset: int) -> int:
    return x * x + offset


@task
def collect(xs: list[int]) -> list[int]:
    return xs


@task
def add(a: int, b: int) -> int:
    return a + b


@flow
def wide(n: int = 10_000) -> None:
    collect(square.map(numbers(n), offset=1))


def test_ten_thousand_instances_and_the_downstream_gets_them_in_order(
    store: SqlStore, tmp_path: Path
) -> None:
    ex = LocalPoolExecutor(2, str(tmp_path / "logs"))
    summary = _run(store, wide.build({"n": 10_000}), tmp_path, ex)
    assert summary.state is RunState.SUCCESS
    assert summary.tasks["square"].mapped == {"count": 10_000, "success": 10_000}
    assert _output(summary, "collect") == [i * i + 1 for i in range(10_000)]
    rows = [a for a in store.attempts(summary.run_id) if a.task_id == "square"]
    assert sorted(a.map_index for a in rows) == [-1, *range(10_000)]


@flow
def shapes() -> None:
    nums = numbers(4)
    sq = square.map(nums, offset=unmapped(10))
    collect(add.map(a=sq, b=[100, 200, 300, 400]), task_id="zipped")
    collect(square.map([5, 6], offset=0), task_id="literal")
    collect(square.map(numbers(0, task_id="none"), offset=0), task_id="empty")


def test_zips_literals_chains_and_empty_maps(store: SqlStore, tmp_path: Path) -> None:
    summary = _run(store, shapes.build(), tmp_path)
    assert summary.state is RunState.SUCCESS
    assert _output(summary, "zipped") == [110, 211, 314, 419]
    assert _output(summary, "literal") == [25, 36]
    assert _output(summary, "empty") == []


@flow
def mismatched() -> None:
    collect(add.map(a=numbers(3), b=[1, 2]))


def test_different_lengths_fail_the_mapped_task_with_a_clear_error(
    store: SqlStore, tmp_path: Path
) -> None:
    summary = _run(store, mismatched.build(), tmp_path)
    add_task = summary.tasks["add"]
    assert add_task.state is TaskState.FAILED
    assert add_task.latest.error_message == "mapped arguments have different lengths (a=3, b=2)"
    assert summary.tasks["collect"].state is TaskState.UPSTREAM_FAILED


@task(retries=1)
def fragile(x: int, marker: str, ctx: object) -> int:
    try_number = getattr(ctx, "try_number", 0)
    if x == 2 and try_number == 1:
        raise RuntimeError("instance 2 fails once")
    if x == 3 and Path(marker).exists():
        raise RuntimeError("instance 3 is broken until the marker goes")
    with open(marker + ".ledger", "a") as fh:
        fh.write(f"{x}\n")
    return x


@flow
def fragile_flow(marker: str = "") -> None:
    collect(fragile.map(numbers(5), marker=marker))


def test_instances_retry_and_resume_on_their_own(store: SqlStore, tmp_path: Path) -> None:
    marker = tmp_path / "broken"
    marker.touch()
    dag = fragile_flow.build({"marker": str(marker)})
    first = _run(store, dag, tmp_path)
    assert first.state is RunState.FAILED
    assert first.tasks["fragile"].mapped == {"count": 5, "success": 4, "failed": 1}
    rows = [a for a in store.attempts(first.run_id) if a.task_id == "fragile" and a.map_index == 2]
    assert [a.state for a in rows] == [TaskState.UP_FOR_RETRY, TaskState.SUCCESS]
    ledger = Path(f"{marker}.ledger")
    assert sorted(ledger.read_text().split()) == ["0", "1", "2", "4"]
    marker.unlink()
    ledger.unlink()
    ex = InProcessExecutor()
    try:
        runner = Runner(store, ex, home=tmp_path, clock=SystemClock())
        resumed = runner.resume(first.run_id, dag, FlowRef(dag.name))
    finally:
        ex.close()
    assert resumed.state is RunState.SUCCESS
    assert ledger.read_text().split() == ["3"], "only the failed instance runs again"
    assert _output(resumed, "collect") == [0, 1, 2, 3, 4]


def test_map_needs_something_to_map_over() -> None:
    with pytest.raises(DefinitionError, match="needs a task output or a list"):

        @flow
        def nothing() -> None:
            square.map(3, offset=1)

        nothing.build()
