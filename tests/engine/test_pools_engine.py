"""Pools, priorities and limits in the run loop, on a real SQLite store with real executors: the
order of starts by effective priority weight (within a run and across runs), pool slots and
max_active_tasks never exceeded (counted from the attempts' start and end times), slots given
back on every way an attempt ends, and a task whose pool cannot take it failed, not left waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from rota import Flow, PythonSensor, PythonTask, RetryPolicy, ShellTask
from rota.engine.report import RunSummary
from rota.engine.runner import FlowRef, Runner, RunnerOptions
from rota.engine.slots import SlotGroup
from rota.errors import ConfigError
from rota.executors.threads import InProcessExecutor, ThreadExecutor
from rota.model.dag import Dag
from rota.model.schedule import SystemClock
from rota.model.states import RunState, TaskState
from rota.store.base import AttemptRecord, Liveness
from rota.store.sql import SqlStore, open_store
from rota.store.tables import slot_claims


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    with open_store(f"sqlite:///{tmp_path / 'rota.db'}") as s:
        yield s


def _run(store: SqlStore, dag: Dag, home: Path, workers: int = 4) -> RunSummary:
    ex = ThreadExecutor(workers) if workers > 1 else InProcessExecutor()
    try:
        return Runner(store, ex, home=home, clock=SystemClock()).run(dag, FlowRef(dag.name))
    finally:
        ex.close()


def _attempts(store: SqlStore, run_id: str) -> list[AttemptRecord]:
    return [a for a in store.attempts(run_id) if a.started_at is not None]


def most_at_once(spans: Sequence[tuple[datetime, datetime, int]]) -> int:
    """The largest sum of weights of spans open at one instant (an end before a start at a tie:
    a slot given back is taken again by the next attempt)."""
    events = sorted([(s, 1, w) for s, _, w in spans] + [(e, 0, -w) for _, e, w in spans])
    now = most = 0
    for _, _, change in events:
        now += change
        most = max(most, now)
    return most


def _spans(
    attempts: Sequence[AttemptRecord], weight: int = 1
) -> list[tuple[datetime, datetime, int]]:
    out = []
    for a in attempts:
        assert a.started_at is not None and a.finished_at is not None, a
        out.append((a.started_at, a.finished_at, weight))
    return out


def _started_order(attempts: Sequence[AttemptRecord]) -> list[str]:
    return [a.task_id for a in sorted(attempts, key=lambda a: a.started_at or datetime.min)]


def nap(seconds: float = 0.05) -> None:
    time.sleep(seconds)


def _claims(store: SqlStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(slot_claims)).scalar_one())


def test_ready_tasks_start_by_priority_weight_within_a_run(store: SqlStore, tmp_path: Path) -> None:
    store.set_pool("one", 1, at=datetime.now(UTC))
    weights = {"w3": 3, "w50": 50, "w7": 7, "w-1": -1, "w20": 20}
    with Flow("prio") as f:
        for tid, w in weights.items():
            PythonTask(tid, nap, pool="one", priority_weight=w, weight_rule="absolute")
    summary = _run(store, f.build(), tmp_path)
    assert summary.state is RunState.SUCCESS
    attempts = _attempts(store, summary.run.run_id)
    assert _started_order(attempts) == ["w50", "w20", "w7", "w3", "w-1"]
    assert most_at_once(_spans(attempts)) == 1


def test_by_default_a_task_with_more_downstream_goes_first(store: SqlStore, tmp_path: Path) -> None:
    with Flow("fan") as f:
        lone = PythonTask("lone", nap)  # defined first: first in line without weights
        hub = PythonTask("hub", nap)
        hub >> [PythonTask(f"leaf{i}", nap) for i in range(3)]
        lone >> PythonTask("after_lone", nap)
    summary = _run(store, f.build(), tmp_path, workers=1)
    order = _started_order(_attempts(store, summary.run.run_id))
    assert order[0] == "hub"  # weight 1 + 3 downstream beats lone's 1 + 1


def test_max_active_tasks_bounds_one_run_below_its_workers(store: SqlStore, tmp_path: Path) -> None:
    with Flow("narrow", max_active_tasks=2) as f:
        for i in range(6):
            PythonTask(f"t{i}", nap, args=(0.2,))
    summary = _run(store, f.build(), tmp_path, workers=4)
    assert summary.state is RunState.SUCCESS
    assert most_at_once(_spans(_attempts(store, summary.run.run_id))) == 2


def test_pool_slots_are_counted_by_weight(store: SqlStore, tmp_path: Path) -> None:
    store.set_pool("mem", 3, at=datetime.now(UTC))
    with Flow("heavy") as f:
        for i in range(3):
            PythonTask(f"big{i}", nap, args=(0.2,), pool="mem", pool_slots=2)
            PythonTask(f"small{i}", nap, args=(0.2,), pool="mem")
    summary = _run(store, f.build(), tmp_path, workers=4)
    assert summary.state is RunState.SUCCESS
    attempts = _attempts(store, summary.run.run_id)
    spans = [(s, e, 2 if a.task_id.startswith("big") else 1) for a, (s, e, _) in
             zip(attempts, _spans(attempts), strict=True)]  # fmt: skip
    assert most_at_once(spans) <= 3
    assert most_at_once(_spans(attempts)) >= 2  # a big and a small ran together


def fail() -> None:
    raise RuntimeError("no")


_tries: dict[str, int] = {}


def flaky(key: str) -> None:
    _tries[key] = _tries.get(key, 0) + 1
    if _tries[key] == 1:
        raise RuntimeError("first try fails")


def test_every_way_an_attempt_ends_gives_its_slot_back(store: SqlStore, tmp_path: Path) -> None:
    store.set_pool("one", 1, at=datetime.now(UTC))
    key = str(tmp_path)
    with Flow("ends") as f:
        a = PythonTask("fails", fail, pool="one")
        b = ShellTask("times_out", "sleep 30", pool="one", timeout=0.3, trigger_rule="all_done")
        c = PythonTask("retried", flaky, args=(key,), pool="one", trigger_rule="all_done",
                       retries=RetryPolicy(max_attempts=2))  # fmt: skip
        d = PythonTask("last", nap, pool="one", trigger_rule="all_done")
        a >> b >> c >> d
    summary = _run(store, f.build(), tmp_path, workers=2)
    states = {tid: t.state for tid, t in summary.tasks.items()}
    assert states == {
        "fails": TaskState.FAILED,
        "times_out": TaskState.FAILED,
        "retried": TaskState.SUCCESS,
        "last": TaskState.SUCCESS,
    }
    assert summary.tasks["retried"].attempts == 2
    assert _claims(store) == 0  # the run ended: it holds nothing


def test_a_reschedule_sensor_holds_no_slot_between_pokes(store: SqlStore, tmp_path: Path) -> None:
    store.set_pool("one", 1, at=datetime.now(UTC))
    marker = tmp_path / "written"
    with Flow("sense") as f:
        # the sensor is satisfied only once `write` ran, in the same one-slot pool
        PythonSensor("wait", marker.exists, pool="one", mode="reschedule",
                     poke_interval=0.1, timeout=20, priority_weight=10)  # fmt: skip
        PythonTask("write", marker.touch, pool="one")
    summary = _run(store, f.build(), tmp_path, workers=2)
    assert summary.state is RunState.SUCCESS
    assert summary.tasks["wait"].latest.pokes >= 1


def test_a_task_whose_pool_is_missing_or_too_small_fails_and_the_run_goes_on(
    store: SqlStore, tmp_path: Path
) -> None:
    store.set_pool("small", 1, at=datetime.now(UTC))
    with Flow("misfit") as f:
        missing = PythonTask("missing", nap, pool="nope")
        missing >> PythonTask("after", nap)
        PythonTask("too_big", nap, pool="small", pool_slots=2)
        PythonTask("fine", nap, pool="small")
    summary = _run(store, f.build(), tmp_path)
    states = {tid: t.state for tid, t in summary.tasks.items()}
    assert states == {
        "missing": TaskState.FAILED,
        "after": TaskState.UPSTREAM_FAILED,
        "too_big": TaskState.FAILED,
        "fine": TaskState.SUCCESS,
    }
    err = summary.tasks["missing"].latest
    assert err.error_type == "PoolError"
    assert err.error_message == "pool 'nope' does not exist (create it: rota pools set nope N)"
    assert summary.tasks["too_big"].latest.error_message == (
        "the task needs 2 slots of pool 'small', which has 1 (rota pools set small 2)"
    )
    assert summary.tasks["missing"].attempts == 0  # it never started
    assert summary.state is RunState.FAILED


def test_three_runs_share_a_pool_in_priority_order_across_runs(
    store: SqlStore, tmp_path: Path
) -> None:
    """The pool starts paused (0 slots) until every run's tasks wait for it; then one slot: the
    starts follow the weights across the three runs, not run by run."""
    store.set_pool("gpu", 0, at=datetime.now(UTC))
    weights = {"a": [90, 40, 10], "b": [80, 50, 20], "c": [70, 60, 30]}
    flows = {}
    for run, ws in weights.items():
        with Flow(f"run_{run}") as f:
            for w in ws:
                PythonTask(f"{run}{w}", nap, pool="gpu", priority_weight=w, weight_rule="absolute")
        flows[run] = f.build()
    results: dict[str, RunSummary] = {}
    errors: list[BaseException] = []

    def drive(run: str) -> None:
        try:
            with open_store(f"sqlite:///{tmp_path / 'rota.db'}") as own:
                results[run] = _run(own, flows[run], tmp_path / run, workers=3)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=drive, args=(r,)) for r in weights]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        live = Liveness("", datetime.now(UTC) - timedelta(seconds=30))
        (gpu,) = [p for p in store.pools(live) if p.name == "gpu"]
        if gpu.waiting == 9:
            break
        time.sleep(0.05)
    assert gpu.waiting == 9, "every task of the three runs waits for the paused pool"
    store.set_pool("gpu", 1, at=datetime.now(UTC))
    for t in threads:
        t.join(120)
    assert not errors, errors
    attempts = [a for s in results.values() for a in _attempts(store, s.run.run_id)]
    assert all(s.state is RunState.SUCCESS for s in results.values())
    expected = sorted((w for ws in weights.values() for w in ws), reverse=True)
    assert [int(t[1:]) for t in _started_order(attempts)] == expected
    assert most_at_once(_spans(attempts)) == 1


def test_a_schedulers_parallelism_bounds_task_slots_over_all_its_runs(
    store: SqlStore, tmp_path: Path
) -> None:
    """Two runs of one scheduler (one slot group, limit 2), four workers each: never more than 2
    of their attempts at once; a run of another scheduler does not count against them."""
    flows = {}
    for run in ("x", "y", "other"):
        with Flow(f"run_{run}") as f:
            for i in range(4):
                PythonTask(f"{run}{i}", nap, args=(0.3,))
        flows[run] = f.build()
    groups = {"x": SlotGroup("sched-1", 2), "y": SlotGroup("sched-1", 2),
              "other": SlotGroup("sched-2", 2)}  # fmt: skip
    results: dict[str, RunSummary] = {}
    errors: list[BaseException] = []

    def drive(run: str) -> None:
        ex = ThreadExecutor(4)
        try:
            with open_store(f"sqlite:///{tmp_path / 'rota.db'}") as own:
                runner = Runner(own, ex, home=tmp_path / run, clock=SystemClock(),
                                options=RunnerOptions(slot_group=groups[run]))  # fmt: skip
                results[run] = runner.run(flows[run], FlowRef(flows[run].name))
        except BaseException as err:  # reported below
            errors.append(err)
        finally:
            ex.close()

    threads = [threading.Thread(target=drive, args=(r,)) for r in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert all(s.state is RunState.SUCCESS for s in results.values())
    mine = [a for r in ("x", "y") for a in _attempts(store, results[r].run.run_id)]
    assert most_at_once(_spans(mine)) == 2
    everyone = mine + _attempts(store, results["other"].run.run_id)
    assert most_at_once(_spans(everyone)) > 2  # the other scheduler's run was not held back


def test_a_driver_reads_its_schedulers_slot_group_from_its_environment() -> None:
    group = SlotGroup("vm:1:2", 8)
    assert SlotGroup.from_environ(group.environ()) == group
    assert SlotGroup.from_environ({}) is None
    for bad in ({"ROTA_PARALLELISM": "0", "ROTA_PARALLELISM_GROUP": "g"},
                {"ROTA_PARALLELISM": "many", "ROTA_PARALLELISM_GROUP": "g"},
                {"ROTA_PARALLELISM": "4"}):  # fmt: skip
        with pytest.raises(ConfigError, match="ROTA_PARALLELISM must be a whole number >= 1"):
            SlotGroup.from_environ(bad)
