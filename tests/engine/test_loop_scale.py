"""Issue 14: the run loop's helpers have narrow interfaces, and nothing per task costs O(run size).

Each test asserts a fact (which modules import which, rows a query reads back, memory a
computation holds, what a snapshot reads), never a time.
"""

from __future__ import annotations

import ast
import sys
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

import rota.engine
from rota import Flow, PythonTask, task
from rota.engine import resume
from rota.engine.book import RunBook
from rota.engine.progress import progress_of
from rota.engine.report import RunSummary
from rota.engine.resume import plan_resume
from rota.engine.runner import FlowRef, Runner
from rota.executors.base import Executor
from rota.executors.threads import InProcessExecutor
from rota.model.dag import Dag
from rota.model.priority import effective_weights
from rota.model.schedule import SystemClock
from rota.model.states import RunState, TaskState
from rota.store import litewrite
from rota.store.base import AttemptRecord, Change, NewAttempt, NewTask, RunRecord
from rota.store.sql import SqlStore, open_store
from rota.store.writes import group_changes

T0 = datetime(2026, 3, 1, tzinfo=UTC)
HELPERS = ("book", "cache", "mapping", "sensing", "dispatch", "refs", "ending", "progress")


def noop() -> None:
    """A task that does nothing."""


def _imports(module: str) -> set[str]:
    """Every module *module* (of rota.engine) imports, at run time or for type checking."""
    path = Path(rota.engine.__file__).parent / f"{module}.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("module", HELPERS)
def test_no_helper_of_the_loop_imports_the_loop(module: str) -> None:
    assert "rota.engine.loop" not in _imports(module)


def test_cache_mapping_and_sensing_do_not_import_each_other_in_a_circle() -> None:
    assert "rota.engine.cache" not in _imports("mapping")
    assert "rota.engine.cache" not in _imports("sensing")
    assert "rota.engine.mapping" not in _imports("sensing")


def test_a_retry_reads_back_only_its_own_task_rows(tmp_path: Path) -> None:
    """Adding the next attempt of one task reads back that task's rows, not every scheduled
    attempt of the run: O(1) per retry, not O(run size)."""
    n = 2_000
    with open_store(f"sqlite:///{tmp_path}/rota.db") as store:
        tasks = [NewTask(f"t{i}", "python", "h") for i in range(n)]
        store.create_run("r1", "f", {}, tasks, T0)
        first = store.attempts("r1")[0]
        reads: list[tuple[str, Any]] = []

        def record(_c: Any, _cur: Any, statement: str, params: Any, *_rest: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "task_attempts" in statement:
                reads.append((statement, params))

        event.listen(store.engine, "before_cursor_execute", record)
        failed = [
            Change(first.id, TaskState.SCHEDULED, TaskState.QUEUED),
            Change(first.id, TaskState.QUEUED, TaskState.RUNNING),
            Change(first.id, TaskState.RUNNING, TaskState.UP_FOR_RETRY),
        ]
        (new,) = store.add_attempts(failed, [NewAttempt("r1", "t0", 2, "python", "h")], at=T0)
        event.remove(store.engine, "before_cursor_execute", record)
        assert (new.task_id, new.try_number) == ("t0", 2)
        assert len(reads) == 1
        statement, params = reads[0]
        with store.engine.connect() as conn:
            rows = conn.exec_driver_sql(statement, params).fetchall()
        assert len(rows) == 1, f"the read-back of one new attempt read {len(rows)} rows"


def _layers(layers: int, width: int) -> Dag:
    with Flow(f"layers{layers}") as f:
        prev = [PythonTask(f"t_0_{i}", noop) for i in range(width)]
        for k in range(1, layers):
            layer = [PythonTask(f"t_{k}_{i}", noop) for i in range(width)]
            for i, node in enumerate(layer):
                [prev[i], prev[(i + 1) % width]] >> node
            prev = layer
    return f.build()


def _peak_bytes(dag: Dag) -> tuple[int, dict[str, int]]:
    tracemalloc.start()
    try:
        weights = effective_weights(dag)
        return tracemalloc.get_traced_memory()[1], weights
    finally:
        tracemalloc.stop()


def test_priority_weights_hold_memory_linear_in_the_graph() -> None:
    """Four times the layers, about four times the memory (it was ten: every task's bit
    and every task's set of descendants were held at once, 1.9 GiB for 100,000 tasks)."""
    small, big = _layers(100, 10), _layers(400, 10)
    small_peak, small_weights = _peak_bytes(small)
    big_peak, big_weights = _peak_bytes(big)
    # the weights are still each task's own plus its descendants' (the default rule): layer k
    # holds min(k + 1, width) descendants of t_0_0
    assert small_weights["t_0_0"] == 1 + sum(min(k + 1, 10) for k in range(1, 100))
    assert big_weights["t_0_0"] == 1 + sum(min(k + 1, 10) for k in range(1, 400))
    assert big_weights["t_399_3"] == 1
    assert big_peak < 6 * small_peak, (small_peak, big_peak)


class NoScan(dict[Any, TaskState]):
    """The book's states, refusing to be walked: a snapshot may look keys up, never iterate."""

    def __iter__(self) -> Any:
        raise AssertionError("the snapshot walked every task's state")

    def items(self) -> Any:
        raise AssertionError("the snapshot walked every task's state")

    def values(self) -> Any:
        raise AssertionError("the snapshot walked every task's state")


def _record(i: int, tid: str) -> AttemptRecord:
    return AttemptRecord(
        id=i, run_id="r1", task_id=tid, map_index=-1, try_number=1,
        state=TaskState.SCHEDULED, operator="python", code_hash="h",
    )  # fmt: skip


def test_a_progress_snapshot_reads_what_runs_and_waits_not_the_whole_run() -> None:
    book = RunBook("r1")
    book.state = NoScan()
    for i in range(1_000):
        book.load((f"t{i}", -1), _record(i, f"t{i}"))
    for i in range(10):
        book.change((f"t{i}", -1), TaskState.QUEUED, {})
        book.change((f"t{i}", -1), TaskState.RUNNING, {})
    for i in range(7):
        book.change((f"t{i}", -1), TaskState.SUCCESS, {})
    book.change(("t7", -1), TaskState.FAILED, {})
    snap = progress_of(book, 1_000, [("t8", -1), ("t9", -1)], [], T0)
    assert (snap.total, snap.done, snap.failed) == (1_000, 7, 1)
    assert snap.running == ("t8", "t9")
    assert book.counts[TaskState.SCHEDULED] == 990


class StepCounter:
    """The executor, with the loop's steps counted (one ``poll`` per step)."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.steps = 0

    def poll(self, timeout: float) -> Any:
        self.steps += 1
        return self.inner.poll(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Statements:
    """Counts the statements that write or read attempts, and the commits of transactions that
    changed attempts' states: on the store's engine (SQLAlchemy's events) and on the driver path
    SQLite's state writes take (store/litewrite.py, which emits no engine events)."""

    def __init__(self, store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.commits = 0
        self.updates: list[int] = []  # rows of parameters per UPDATE of task_attempts
        self.inserts: list[int] = []
        self._dirty = False
        event.listen(store.engine, "commit", self._commit)
        event.listen(store.engine, "before_cursor_execute", self._statement)
        run_step, transaction = litewrite._Step.run, litewrite._transaction

        def step(me: Any, cursor: Any) -> None:
            self._statement(None, cursor, me.prepared.sql, me.rows, None, len(me.rows) > 1)
            run_step(me, cursor)

        def committed(*args: Any) -> None:
            transaction(*args)
            self._commit(None)

        monkeypatch.setattr(litewrite._Step, "run", step)
        monkeypatch.setattr(litewrite, "_transaction", committed)

    def _commit(self, _conn: Any) -> None:
        self.commits += self._dirty
        self._dirty = False

    def _statement(
        self, _c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, many: bool
    ) -> None:
        rows = len(params) if many else 1
        head = statement.lstrip().upper()
        if head.startswith("UPDATE TASK_ATTEMPTS"):
            self.updates.append(rows)
            self._dirty = True
        elif head.startswith("INSERT INTO TASK_ATTEMPTS"):
            self.inserts.append(rows)


def _run(store: SqlStore, dag: Dag, tmp_path: Path) -> tuple[RunSummary, int]:
    ex = StepCounter(InProcessExecutor())
    try:
        runner = Runner(store, ex, home=tmp_path, clock=SystemClock())
        summary = runner.run(dag, FlowRef(dag.name))
    finally:
        ex.close()
    return summary, ex.steps


def test_every_transition_of_a_run_is_written_in_at_most_one_commit_per_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queued, running and success of 200 tasks: every change goes through the writer, which
    commits no more transactions than the loop makes steps, each of executemany updates."""
    with Flow("fan") as f:
        root = PythonTask("root", noop)
        join = PythonTask("join", noop)
        for i in range(200):
            root >> PythonTask(f"leaf_{i}", noop) >> join
    dag = f.build()
    with open_store(f"sqlite:///{tmp_path}/rota.db") as store:
        seen = Statements(store, monkeypatch)
        summary, steps = _run(store, dag, tmp_path)
    assert summary.state is RunState.SUCCESS
    assert sum(seen.updates) == 3 * len(dag)  # queued, running, success of each task
    # one transaction per step (and the last step's, committed as the loop ends)
    assert 0 < seen.commits <= steps + 1, (seen.commits, steps)
    # each transaction updates its changes in groups setting the same columns: at most three
    # rounds (an attempt queued, running and ended in one batch) of at most three column sets
    # (queued, running, ended), however many tasks the batch holds
    print(f"{seen.commits} commits, {len(seen.updates)} updates, {steps} steps")
    assert len(seen.updates) <= 9 * seen.commits


@task
def items() -> list[int]:
    return list(range(300))


@task
def one(x: int) -> int:
    return x


def test_a_map_expansion_is_one_insert_of_its_instances(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task mapped over 300 elements: its instances are one executemany INSERT."""
    with Flow("mapped") as f:
        one.map(items())
    dag = f.build()
    with open_store(f"sqlite:///{tmp_path}/rota.db") as store:
        seen = Statements(store, monkeypatch)
        summary, _ = _run(store, dag, tmp_path)
    assert summary.state is RunState.SUCCESS
    assert summary.tasks["one"].mapped == {"count": 300, "success": 300}
    assert seen.inserts == [2, 300]  # the run's two tasks, then the 300 instances at once
    assert sum(seen.updates) == 3 * 2 + 3 * 300  # each instance's three transitions


def test_a_batch_moving_each_attempt_three_times_is_three_statements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queued, running and success of 100 attempts, interleaved in one batch as a step makes
    them: three executemany updates in one transaction (it was one statement per change when
    an attempt appeared twice), each attempt's changes in their order."""
    with open_store(f"sqlite:///{tmp_path}/rota.db") as store:
        tasks = [NewTask(f"t{i}", "python", "h") for i in range(100)]
        store.create_run("r1", "f", {}, tasks, T0)
        ids = [rec.id for rec in store.attempts("r1")]
        steps = [
            (TaskState.SCHEDULED, TaskState.QUEUED, {"queued_at": T0}),
            (TaskState.QUEUED, TaskState.RUNNING, {"started_at": T0}),
            (TaskState.RUNNING, TaskState.SUCCESS, {"finished_at": T0}),
        ]
        batch = [Change(i, old, new, dict(f)) for i in ids for old, new, f in steps]
        assert [len(g) for g in group_changes(batch)] == [100, 100, 100]
        seen = Statements(store, monkeypatch)
        store.apply(batch, at=T0)
        assert seen.updates == [100, 100, 100]
        assert seen.commits == 1
        assert {rec.state for rec in store.attempts("r1")} == {TaskState.SUCCESS}


def _lines_run(module_file: str, call: Any, *args: Any) -> tuple[int, Any]:
    """How many lines of *module_file* run during ``call(*args)`` (a count of work, not a
    time), and what it returned."""
    count = 0

    def local(frame: Any, what: str, _arg: Any) -> Any:
        nonlocal count
        if what == "line":
            count += 1
        return local

    def trace(frame: Any, _what: str, _arg: Any) -> Any:
        return local if frame.f_code.co_filename == module_file else None

    sys.settrace(trace)
    try:
        got = call(*args)
    finally:
        sys.settrace(None)
    return count, got


def _interrupted_run(n: int) -> tuple[Dag, RunRecord, list[AttemptRecord]]:
    """A chain of *n* tasks whose runner died: half succeeded, one running, the rest scheduled."""
    with Flow(f"chain{n}") as f:
        prev = PythonTask("t0", noop)
        for i in range(1, n):
            prev = prev >> PythonTask(f"t{i}", noop)
    dag = f.build()
    run = RunRecord("r1", dag.name, RunState.RUNNING, {}, T0)
    records = []
    for i, tid in enumerate(dag.order):
        state = TaskState.SUCCESS if i < n // 2 else TaskState.SCHEDULED
        if i == n // 2:
            state = TaskState.RUNNING
        code = dag.tasks[tid].op.code_hash()
        records.append(replace(_record(i + 1, tid), state=state, code_hash=code))
    return dag, run, records


def test_planning_the_resume_of_a_run_is_linear_in_its_tasks() -> None:
    """Four times the tasks, about four times the work (each task to re-run walked every
    attempt of the run looking for its mapped instances: sixteen)."""
    work = {}
    for n in (250, 1_000):
        dag, run, records = _interrupted_run(n)
        work[n], plan = _lines_run(resume.__file__, plan_resume, run, dag, records, T0)
        assert len(plan.kept) == n // 2
        assert len(plan.new) == 1  # the interrupted task; the scheduled ones wait already
        assert plan.reasons[f"t{n // 2}"].startswith("interrupted in try 1")
    assert work[1_000] < 6 * work[250], work


def test_a_code_change_names_the_first_changed_task_above_each_task() -> None:
    dag, run, records = _interrupted_run(6)
    done = [replace(r, state=TaskState.SUCCESS) for r in records]
    done[1] = replace(done[1], code_hash="old")
    done[3] = replace(done[3], code_hash="old")
    plan = plan_resume(replace(run, state=RunState.FAILED), dag, done, T0)
    assert plan.kept == ["t0"]
    assert plan.reasons == {
        "t1": "code changed since its success in try 1",
        "t2": "downstream of t1, whose code changed",
        "t3": "code changed since its success in try 1",
        "t4": "downstream of t1, whose code changed",
        "t5": "downstream of t1, whose code changed",
    }
