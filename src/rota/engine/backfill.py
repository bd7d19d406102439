"""Backfills: one run per past schedule interval, planned from what the store holds, then driven.

:func:`plan_backfill` looks at the run each interval has already (the store's unique key allows one
per flow and logical date) and decides what to do with it, and why: a date with no run gets one; a
run that succeeded with the current code is skipped; a failed run, or one whose tasks' code changed
since it succeeded, runs again only when ``rerun`` asks for it; a run whose driver died is resumed
(only its unfinished tasks run); a run that a live runner drives is left to it.

:class:`Backfill` carries the plan out with one driver process per run (``rota _drive``, see
:mod:`rota.engine.launcher`), at most ``max_active_runs`` at once. Runs are created lazily, only
when a driver slot is free, so a backfill killed midway leaves at most that many runs unfinished,
and running it again resumes them and creates the missing ones. Two backfills of overlapping ranges
never make two runs for one date: the second ``create_run`` raises ``RunExists`` and the date is
reported as taken by the run that holds it.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Protocol

from rota.engine.backfillopts import MAX_INTERVALS, RERUN_LEVELS
from rota.engine.launcher import EXIT_BUSY, Ended
from rota.engine.lease import RunBusy, RunnerId, provably_dead
from rota.engine.resume import latest_attempts
from rota.engine.runner import FlowRef, clear_tasks, create_run, dag_tasks
from rota.errors import RunExists, UserError
from rota.model.dag import Dag
from rota.model.schedule import Clock, Interval, Schedule
from rota.model.states import FAILURES, RunState
from rota.store.base import AttemptRecord, RunRecord, RunTiming, Store

ACTIONS: Final = ("run", "skip", "rerun", "resume", "taken")
OUTCOMES: Final = ("succeeded", "failed", "interrupted", "skipped", "taken")
"""Final outcomes of an interval; ``started`` events come before them for intervals that run."""

_UNFINISHED: Final = (RunState.QUEUED, RunState.RUNNING, RunState.INTERRUPTED)


@dataclass(frozen=True, slots=True)
class PlanItem:
    """What a backfill does with one interval, and why.

    Attributes:
        interval: the schedule interval; its start is the run's logical date.
        action: ``run`` (create a run), ``skip``, ``rerun`` (clear *tasks*, then drive),
            ``resume`` (drive the existing run: only unfinished tasks run) or ``taken`` (another
            live runner drives the existing run).
        reason: one line for people.
        run_id: the interval's existing run, if any.
        tasks: for ``rerun``, the tasks to clear (with everything downstream of them).
    """

    interval: Interval
    action: str
    reason: str
    run_id: str | None = None
    tasks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Decision:
    action: str
    reason: str
    tasks: tuple[str, ...] = ()


def plan_backfill(
    store: Store,
    flow_name: str,
    dag: Dag,
    schedule: Schedule | None,
    start: datetime,
    end: datetime,
    *,
    rerun: str,
    reverse: bool = False,
    now: datetime | None = None,
    stale_after: timedelta = timedelta(seconds=30),
    max_intervals: int = MAX_INTERVALS,
) -> list[PlanItem]:
    """Decide, for every interval whose logical date lies in ``[start, end]``, what a backfill
    does (as Airflow's: a *start* between boundaries moves forward to the next one, and *end* is
    the latest logical date included).

    Args:
        store: where the existing runs are read from; nothing is written.
        flow_name: the flow's name in the store.
        dag: the flow as it is now (its tasks' code hashes are compared with the stored ones).
        schedule: the flow's clock schedule.
        start: aware start of the range.
        end: aware end of the range: the latest logical date included; not before *start*.
        rerun: one of :data:`RERUN_LEVELS`.
        reverse: newest interval first.
        now: the time a runner's heartbeat is judged at (None: a run's owner counts as live
            unless its process is provably dead, whatever its heartbeat's age).
        stale_after: a heartbeat older than this means its runner is gone.
        max_intervals: refuse a range of more intervals than this (counted, not made).

    Returns:
        One item per interval, in the order they will be run.

    Raises:
        UserError: no clock schedule, an unknown *rerun* level, *end* before *start*, or more
            than *max_intervals* intervals in the range (the message gives their number).
    """
    if schedule is None:
        raise UserError(f"flow {flow_name!r} has no cron or timedelta schedule to backfill")
    if rerun not in RERUN_LEVELS:
        raise UserError(f"--rerun must be one of {', '.join(RERUN_LEVELS)}, got {rerun!r}")
    if end < start:
        raise UserError(f"--end {end.isoformat()} is before --start {start.isoformat()}")
    check_range_size(flow_name, schedule, start, end, max_intervals)
    intervals = schedule.intervals_between(start, end, reverse=reverse)
    if not intervals:
        return []
    first = min(iv.start for iv in intervals)
    last = max(iv.start for iv in intervals)
    existing = {r.logical_date: r for r in store.runs_for_dates(flow_name, first, last)}
    level = RERUN_LEVELS.index(rerun)
    items: list[PlanItem] = []
    for iv in intervals:
        run = existing.get(iv.start)
        if run is None:
            items.append(PlanItem(iv, "run", "no run yet"))
            continue
        decision = _decide(store, run, dag, level, now, stale_after)
        items.append(PlanItem(iv, decision.action, decision.reason, run.run_id, decision.tasks))
    return items


def check_range_size(
    flow_name: str, schedule: Schedule, start: datetime, end: datetime, limit: int
) -> None:
    """Refuse a backfill of more than *limit* intervals, counted without making them.

    Raises:
        UserError: the range holds more than *limit* intervals; the message gives their number.
    """
    count = schedule.count_between(start, end)
    if count > limit:
        raise UserError(
            f"the range holds {count:,} intervals of flow {flow_name!r}'s schedule, more than the "
            f"{limit:,} a backfill plans at most: narrow --start/--end, or pass "
            f"--max-intervals {count} to run them all"
        )


def _decide(
    store: Store, run: RunRecord, dag: Dag, level: int, now: datetime | None, stale: timedelta
) -> _Decision:
    """What to do with the existing *run* at rerun level *level* (an index in RERUN_LEVELS)."""
    if run.state in _UNFINISHED:
        return _decide_unfinished(run, now, stale)
    latest = latest_attempts(store.attempts(run.run_id))
    if run.state is RunState.FAILED:
        return _decide_failed(latest, dag, level)
    return _decide_succeeded(latest, dag, level)


def _decide_succeeded(latest: Mapping[str, AttemptRecord], dag: Dag, level: int) -> _Decision:
    everything = tuple(dag.order)
    if level >= RERUN_LEVELS.index("all"):
        return _Decision("rerun", "--rerun all", everything)
    changes, to_clear = _code_changes(latest, dag)
    if not changes:
        return _Decision("skip", "succeeded and current")
    reason = "succeeded, but " + "; ".join(changes)
    if level >= RERUN_LEVELS.index("changed"):
        return _Decision("rerun", reason, to_clear)
    return _Decision("skip", f"{reason} (use --rerun changed)")


def _code_changes(
    latest: Mapping[str, AttemptRecord], dag: Dag
) -> tuple[list[str], tuple[str, ...]]:
    """What changed in the flow since the run, in words, and the tasks a re-run must clear (its
    downstream cones follow): changed and new tasks, or all of them when a task was removed."""
    changed = [
        tid
        for tid in dag.order
        if tid in latest
        and latest[tid].code_hash
        and latest[tid].code_hash != dag.tasks[tid].op.code_hash()
    ]
    added = [tid for tid in dag.order if tid not in latest]
    removed = sorted(set(latest) - set(dag.tasks))
    words: list[str] = []
    if changed:
        words.append(f"the code of {_tasks_phrase(changed)} changed")
    if added:
        words.append(f"{_tasks_phrase(added)} {'is' if len(added) == 1 else 'are'} new")
    if removed:
        words.append(f"{_tasks_phrase(removed)} {'was' if len(removed) == 1 else 'were'} removed")
    to_clear = tuple(dag.order) if removed else tuple(changed + added)
    return words, to_clear


def _tasks_phrase(task_ids: Iterable[str]) -> str:
    ids = list(task_ids)
    return ("task " if len(ids) == 1 else "tasks ") + ", ".join(ids)


def _decide_failed(latest: Mapping[str, AttemptRecord], dag: Dag, level: int) -> _Decision:
    if level >= RERUN_LEVELS.index("all"):
        return _Decision("rerun", "--rerun all", tuple(dag.order))
    if level >= RERUN_LEVELS.index("failed"):
        failed = [tid for tid, rec in latest.items() if rec.state in FAILURES]
        return _Decision("resume", f"failed: re-runs its failed tasks: {', '.join(failed)}")
    return _Decision("skip", "failed (use --rerun failed)")


def _decide_unfinished(run: RunRecord, now: datetime | None, stale: timedelta) -> _Decision:
    if _driven(run, now, stale):
        return _Decision(
            "taken", f"run {run.run_id} is running (another backfill or the scheduler)"
        )
    resumable = "interrupted: only unfinished tasks run"
    if run.state is not RunState.QUEUED or run.owner is not None or run.run_type == "backfill":
        return _Decision("resume", resumable)
    return _Decision("taken", f"run {run.run_id} is queued for the scheduler")


def _driven(run: RunRecord, now: datetime | None, stale: timedelta) -> bool:
    """Whether a live runner holds *run*'s lease (the way :func:`rota.engine.lease.acquire`
    judges it: its process is not provably dead and its heartbeat is fresh)."""
    if run.owner is None:
        return False
    owner = RunnerId.parse(run.owner)
    if owner is not None and provably_dead(owner):
        return False
    if now is None or run.heartbeat_at is None:
        return now is None
    return now - run.heartbeat_at < stale


class Launcher(Protocol):
    """Starts one driver per run and reports when they end (:class:`DriverLauncher`)."""

    def launch(self, run_id: str) -> None:
        """Start a driver for *run_id*."""

    def wait_any(self, timeout: float) -> list[Ended]:
        """Drivers that ended, waiting up to *timeout* seconds for one."""


@dataclass(frozen=True, slots=True)
class BackfillEvent:
    """Something that happened to one interval: ``started`` or one of :data:`OUTCOMES`."""

    item: PlanItem
    outcome: str
    run_id: str | None
    detail: str

    @property
    def final(self) -> bool:
        """Whether this is the interval's outcome (every interval gets exactly one)."""
        return self.outcome != "started"


@dataclass
class BackfillSummary:
    """What a backfill did: outcomes counted, and the dates other runners held."""

    counts: Counter[str] = field(default_factory=Counter)
    taken: list[BackfillEvent] = field(default_factory=list)
    failed: list[BackfillEvent] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 if any run failed or was interrupted, else 0."""
        return 1 if self.counts["failed"] or self.counts["interrupted"] else 0


EventHook = Callable[[BackfillEvent], None]


class Backfill:
    """Carries out a plan with at most *max_active_runs* drivers at once.

    Args:
        store: the store the runs are created in.
        launcher: starts the drivers.
        dag: the flow, built with the backfill's parameters (the new runs' tasks and params).
        flow: where the flow's code lives (recorded on new runs; drivers load it from there).
        clock: the time new runs and cleared tasks are stamped with.
        max_active_runs: the most drivers at once; at least 1.
        on_event: called for each interval's events, in order.
        poll: seconds to wait for a driver to end before looking again.

    Raises:
        UserError: *max_active_runs* is below 1.
    """

    def __init__(
        self,
        store: Store,
        launcher: Launcher,
        *,
        dag: Dag,
        flow: FlowRef,
        clock: Clock,
        max_active_runs: int,
        on_event: EventHook | None = None,
        poll: float = 0.5,
    ) -> None:
        if max_active_runs < 1:
            raise UserError(f"--max-active-runs must be at least 1, got {max_active_runs}")
        self.store = store
        self.launcher = launcher
        self.dag = dag
        self.flow = flow
        self.clock = clock
        self.max_active_runs = max_active_runs
        self.on_event = on_event
        self.poll = poll
        self.summary = BackfillSummary()
        self._driving: dict[str, PlanItem] = {}

    def run(self, items: Iterable[PlanItem]) -> BackfillSummary:
        """Act on every item, in order, and wait for the drivers to end.

        Raises:
            KeyboardInterrupt: as raised; the caller closes the launcher (drivers then interrupt
                their runs, to be resumed by the next backfill).
        """
        pending = deque(items)
        if any(item.action == "run" for item in pending):
            ref = self.flow
            self.store.upsert_flow(ref.name, ref.path, ref.code_hash, self.clock.now())
        while pending or self._driving:
            while pending and len(self._driving) < self.max_active_runs:
                self._start(pending.popleft())
            if self._driving:
                for ended in self.launcher.wait_any(self.poll):
                    self._ended(ended)
        return self.summary

    def _emit(self, item: PlanItem, outcome: str, run_id: str | None, detail: str) -> None:
        event = BackfillEvent(item, outcome, run_id, detail)
        if event.final:
            self.summary.counts[outcome] += 1
            if outcome == "taken":
                self.summary.taken.append(event)
            elif outcome in ("failed", "interrupted"):
                self.summary.failed.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _start(self, item: PlanItem) -> None:
        """Act on *item*: report it, or make its run ready and launch a driver for it."""
        if item.action in ("skip", "taken"):
            outcome = "skipped" if item.action == "skip" else "taken"
            self._emit(item, outcome, item.run_id, item.reason)
            return
        try:
            run_id = self._prepare(item)
        except RunExists as err:
            holder = err.run_id or self._holder(item.interval)
            self._emit(item, "taken", holder, f"taken by run {holder} (another backfill?)")
            return
        except RunBusy as err:
            self._emit(item, "taken", item.run_id, str(err))
            return
        self.launcher.launch(run_id)
        self._driving[run_id] = item
        self._emit(item, "started", run_id, item.reason)

    def _prepare(self, item: PlanItem) -> str:
        """The run to drive for *item*: created, cleared for a re-run, or as it is.

        Raises:
            RunExists: another runner created the interval's run meanwhile.
            RunBusy: a live runner drives the run to re-run.
        """
        if item.action == "run":
            return self._create(item.interval)
        assert item.run_id is not None  # only "run" items have no run yet
        if item.action == "rerun":
            now = self.clock.now()
            tasks = item.tasks or tuple(self.dag.order)
            clear_tasks(self.store, item.run_id, self.dag, tasks, now=now, downstream=True)
        return item.run_id

    def _create(self, interval: Interval) -> str:
        """Create the run of *interval*, as a backfill run.

        Raises:
            RunExists: the flow has a run for the interval already.
            RunIdTaken: three random run ids in a row were in use.
        """
        now = self.clock.now()
        timing = RunTiming(interval.start, interval.start, interval.end, "backfill")
        tasks = dag_tasks(self.dag)
        return create_run(
            self.store, self.flow, tasks, self.dag.params, now,
            timing=timing, defaults=self.dag.param_defaults,
        ).run_id  # fmt: skip

    def _holder(self, interval: Interval) -> str:
        runs = self.store.runs_for_dates(self.flow.name, interval.start, interval.start)
        return runs[0].run_id if runs else "?"

    def _ended(self, ended: Ended) -> None:
        """Report the outcome of the driver that drove *ended.run_id*."""
        item = self._driving.pop(ended.run_id, None)
        if item is None:  # not one of ours
            return
        run_id, code = ended.run_id, ended.code
        if code == 0:
            self._emit(item, "succeeded", run_id, f"run {run_id} succeeded")
            return
        if code == EXIT_BUSY:
            self._emit(item, "taken", run_id, f"run {run_id} is driven by another runner")
            return
        state = self.store.get_run(run_id).state
        if state is RunState.SUCCESS:  # another runner finished it before our driver began
            self._emit(item, "taken", run_id, f"run {run_id} was finished by another runner")
        elif state is RunState.FAILED and code == 1:
            self._emit(item, "failed", run_id, f"run {run_id} failed")
        elif state in _UNFINISHED and code == 130:
            self._emit(item, "interrupted", run_id, f"run {run_id} was interrupted")
        else:
            detail = f"driver of run {run_id} exited {code} (see its log in logs/drivers)"
            self._emit(item, "failed", run_id, detail)
