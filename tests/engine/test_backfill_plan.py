"""Planning a backfill from what the store holds, and carrying a plan out with a stand-in launcher
(no processes): the decision for each kind of existing run, lazy creation within the limit, a date
another runner took meanwhile, and what each driver exit code means."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rota import flow, task
from rota.engine.backfill import Backfill, BackfillEvent, PlanItem, plan_backfill
from rota.engine.launcher import Ended
from rota.engine.lease import RunnerId
from rota.engine.runner import FlowRef
from rota.errors import UserError
from rota.model.dag import Dag
from rota.model.schedule import Interval, Schedule
from rota.model.states import RunState, TaskState
from rota.store.base import Change, NewTask, RunChange, RunTiming
from rota.store.sql import SqlStore, open_store
from rota.testing import FakeClock

DAY = timedelta(days=1)
JAN1 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 2, 1, tzinfo=UTC)


@task
def one() -> int:
    return 1


@task
def two(x: int) -> int:
    return x


@flow(schedule="@daily")
def pair() -> None:
    two(one())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    with open_store(f"sqlite:///{tmp_path / 'rota.db'}") as s:
        yield s


@pytest.fixture
def dag() -> Dag:
    return pair.build()


SCHEDULE = Schedule.parse("@daily")


def _tasks(dag: Dag, **hashes: str) -> list[NewTask]:
    return [
        NewTask(tid, spec.op.kind, hashes.get(tid, spec.op.code_hash()))
        for tid, spec in dag.tasks.items()
    ]


def _create(
    store: SqlStore, dag: Dag, day: int, *, run_type: str = "backfill", **hashes: str
) -> str:
    start = JAN1 + (day - 1) * DAY
    run_id = f"run-{day}"
    timing = RunTiming(start, start, start + DAY, run_type)
    store.create_run(run_id, "pair", {}, _tasks(dag, **hashes), NOW, timing=timing)
    return run_id


def _finish(store: SqlStore, run_id: str, failed: tuple[str, ...] = ()) -> None:
    """Drive the run's attempts through the state machine: *failed* tasks fail, others succeed."""
    steps = [TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING]
    for old, new in itertools.pairwise(steps):
        store.apply([Change(a.id, old, new) for a in store.attempts(run_id)], at=NOW)
    store.apply([], [RunChange(run_id, RunState.QUEUED, RunState.RUNNING, NOW)], at=NOW)
    ends = [
        Change(
            a.id, TaskState.RUNNING, TaskState.FAILED if a.task_id in failed else TaskState.SUCCESS
        )
        for a in store.attempts(run_id)
    ]
    final = RunState.FAILED if failed else RunState.SUCCESS
    store.apply(ends, [RunChange(run_id, RunState.RUNNING, final, NOW)], at=NOW)


def _plan(store: SqlStore, dag: Dag, days: int, rerun: str = "none") -> list[PlanItem]:
    end = JAN1 + (days - 1) * DAY  # the latest logical date included: *days* intervals
    return plan_backfill(store, "pair", dag, SCHEDULE, JAN1, end, rerun=rerun, now=NOW)


def test_finished_runs_are_skipped_unless_rerun_asks_and_levels_are_cumulative(
    store: SqlStore, dag: Dag
) -> None:
    _finish(store, _create(store, dag, 1))
    _finish(store, _create(store, dag, 2, two="old"))
    _finish(store, _create(store, dag, 3), failed=("two",))
    by_level = {
        level: [(i.action, i.reason, i.tasks) for i in _plan(store, dag, 4, level)]
        for level in ("none", "failed", "changed", "all")
    }
    changed = "succeeded, but the code of task two changed"
    failed = "failed: re-runs its failed tasks: two"
    assert by_level["none"] == [
        ("skip", "succeeded and current", ()),
        ("skip", f"{changed} (use --rerun changed)", ()),
        ("skip", "failed (use --rerun failed)", ()),
        ("run", "no run yet", ()),
    ]
    assert by_level["failed"][1][0] == "skip" and by_level["failed"][2] == ("resume", failed, ())
    assert by_level["changed"][1] == ("rerun", changed, ("two",))
    assert by_level["changed"][2] == ("resume", failed, ())
    assert by_level["all"][:3] == [("rerun", "--rerun all", ("one", "two"))] * 3


def test_added_and_removed_tasks_count_as_changes(store: SqlStore, dag: Dag) -> None:
    store.create_run(
        "run-1", "pair", {}, [*_tasks(dag), NewTask("gone", "python", "h")], NOW,
        timing=RunTiming(JAN1, JAN1, JAN1 + DAY, "backfill"),
    )  # fmt: skip
    _finish(store, "run-1")
    store.create_run(
        "run-2", "pair", {}, _tasks(dag)[:1], NOW,
        timing=RunTiming(JAN1 + DAY, JAN1 + DAY, JAN1 + 2 * DAY, "backfill"),
    )  # fmt: skip
    _finish(store, "run-2")
    removed, added = _plan(store, dag, 2, "changed")
    assert removed.reason == "succeeded, but task gone was removed"
    assert removed.tasks == ("one", "two")  # the graph's shape changed: everything runs again
    assert added.reason == "succeeded, but task two is new" and added.tasks == ("two",)


def test_unfinished_runs_are_resumed_unless_a_live_runner_holds_them(
    store: SqlStore, dag: Dag
) -> None:
    me = str(RunnerId.current())  # alive: this process
    dead = str(RunnerId(RunnerId.current().host, 1, "not-its-start-time"))
    live = _create(store, dag, 1)
    store.acquire(live, me, expect=None, at=NOW - timedelta(seconds=5))
    gone = _create(store, dag, 2)
    store.acquire(gone, dead, expect=None, at=NOW - timedelta(seconds=5))
    stale = _create(store, dag, 3)
    store.acquire(stale, me, expect=None, at=NOW - timedelta(minutes=5))
    _create(store, dag, 4)  # a backfill created it, then stopped before its driver began
    _create(store, dag, 5, run_type="scheduled")  # the scheduler's
    plan = _plan(store, dag, 5)
    assert [i.action for i in plan] == ["taken", "resume", "resume", "resume", "taken"]
    assert plan[0].reason == "run run-1 is running (another backfill or the scheduler)"
    assert plan[1].reason == "interrupted: only unfinished tasks run"
    assert plan[4].reason == "run run-5 is queued for the scheduler"


def test_bad_input_is_refused(store: SqlStore, dag: Dag) -> None:
    with pytest.raises(UserError, match="no cron or timedelta schedule"):
        plan_backfill(store, "pair", dag, None, JAN1, NOW, rerun="none")
    with pytest.raises(UserError, match="--rerun must be one of"):
        plan_backfill(store, "pair", dag, SCHEDULE, JAN1, NOW, rerun="some")
    with pytest.raises(UserError, match="is before --start"):
        plan_backfill(store, "pair", dag, SCHEDULE, NOW, JAN1, rerun="none")


def test_a_range_of_one_date_plans_that_date_and_an_off_boundary_start_moves_forward(
    store: SqlStore, dag: Dag
) -> None:
    (only,) = plan_backfill(store, "pair", dag, SCHEDULE, JAN1, JAN1, rerun="none", now=NOW)
    assert only.interval == Interval(JAN1, JAN1 + DAY)  # Airflow: backfill -s D -e D runs D
    noon = JAN1 + timedelta(hours=12)
    plan = plan_backfill(store, "pair", dag, SCHEDULE, noon, JAN1 + 3 * DAY, rerun="none", now=NOW)
    assert [i.interval.start for i in plan] == [JAN1 + DAY, JAN1 + 2 * DAY, JAN1 + 3 * DAY]


class StandInLauncher:
    """Ends drivers oldest first, with the exit code given per run (0 by default), and finishes
    their runs in the store the way a driver would."""

    def __init__(self, store: SqlStore, codes: dict[str, int] | None = None) -> None:
        self.store = store
        self.codes = codes or {}
        self.running: list[str] = []
        self.most = 0
        self.created_when_launched: list[int] = []

    def launch(self, run_id: str) -> None:
        self.running.append(run_id)
        self.most = max(self.most, len(self.running))
        unfinished = self.store.runs_in_states([RunState.QUEUED], "pair")
        self.created_when_launched.append(len(unfinished))

    def wait_any(self, timeout: float) -> list[Ended]:
        run_id = self.running.pop(0)
        code = self.codes.get(run_id, 0)
        if code == 0:
            _finish(self.store, run_id)
        return [Ended(run_id, code)]


def _backfill(
    store: SqlStore, dag: Dag, launcher: StandInLauncher, events: list[BackfillEvent]
) -> Backfill:
    return Backfill(
        store, launcher, dag=dag, flow=FlowRef("pair"), clock=FakeClock(NOW),
        max_active_runs=2, on_event=events.append,
    )  # fmt: skip


def test_runs_are_created_lazily_within_the_limit(store: SqlStore, dag: Dag) -> None:
    launcher = StandInLauncher(store)
    events: list[BackfillEvent] = []
    summary = _backfill(store, dag, launcher, events).run(_plan(store, dag, 6))
    assert summary.counts == {"succeeded": 6} and summary.exit_code == 0
    assert launcher.most == 2 and max(launcher.created_when_launched) == 2
    assert [e.outcome for e in events].count("started") == 6
    assert len(store.runs_for_dates("pair")) == 6


def test_a_date_taken_meanwhile_is_reported_with_its_run_and_not_created_twice(
    store: SqlStore, dag: Dag
) -> None:
    plan = _plan(store, dag, 3)
    other = _create(store, dag, 2)  # another backfill, after our plan
    events: list[BackfillEvent] = []
    summary = _backfill(store, dag, StandInLauncher(store), events).run(plan)
    assert summary.counts == {"succeeded": 2, "taken": 1}
    (taken,) = summary.taken
    assert taken.run_id == other and taken.item.interval.start == JAN1 + DAY
    assert len(store.runs_for_dates("pair")) == 3


def test_driver_exit_codes_become_outcomes(store: SqlStore, dag: Dag) -> None:
    _finish(store, _create(store, dag, 1), failed=("two",))
    _finish(store, _create(store, dag, 2), failed=("two",))
    _finish(store, _create(store, dag, 3))
    plan = _plan(store, dag, 2, "failed")
    launcher = StandInLauncher(store, {"run-1": 1, "run-2": 3})
    summary = _backfill(store, dag, launcher, []).run(plan)
    assert summary.counts == {"failed": 1, "taken": 1} and summary.exit_code == 1
    assert summary.taken[0].detail == "run run-2 is driven by another runner"
    # a driver that began after another runner finished the run exits 2: the date was taken
    late = StandInLauncher(store, {"run-3": 2})
    resume = PlanItem(Interval(JAN1 + 2 * DAY, JAN1 + 3 * DAY), "resume", "interrupted", "run-3")
    summary = _backfill(store, dag, late, []).run([resume])
    assert summary.counts == {"taken": 1} and summary.exit_code == 0
    assert summary.taken[0].detail == "run run-3 was finished by another runner"
