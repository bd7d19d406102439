"""The runner: creates runs and drives them, resumes them, and clears tasks for a re-run.

Driving a run means holding its lease (one runner per run, renewed by a heartbeat) and running
the loop in :mod:`rota.engine.loop` until every task has a final state. The store is the truth;
the runner only decides what happens next and asks the store to record it.
"""

from __future__ import annotations

import os
import random
import secrets
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rota.artifacts.inline import INLINE_LIMIT
from rota.artifacts.store import open_artifact_store
from rota.engine.callbacks import CallbackRunner
from rota.engine.faults import NO_FAULTS, FaultPoints
from rota.engine.lease import RunnerId, acquire, fence_after, is_dead
from rota.engine.leftovers import remove_leftovers
from rota.engine.report import RunSummary, summarize
from rota.engine.resume import (
    ParamChange,
    ResumePlan,
    cleared_attempts,
    latest_attempts,
    latest_by_key,
    plan_resume,
    sweep_stale,
)
from rota.engine.slots import SLOT_POLL, SlotBook, SlotGroup
from rota.engine.storesensors import EngineSensors, RoutedExecutor
from rota.engine.writer import BatchWriter
from rota.errors import LeaseLost, NotFound, RunIdTaken, StoreError, UserError
from rota.executors.base import Executor
from rota.model.dag import CALLBACKS_LOG, Dag
from rota.model.safetext import safe_text
from rota.model.schedule import Clock
from rota.model.secrets import Masker, stored_params
from rota.model.states import RunState
from rota.store.base import (
    AttemptRecord,
    Lease,
    NewTask,
    RunChange,
    RunRecord,
    RunTiming,
    Store,
)


@dataclass(frozen=True, slots=True)
class FlowRef:
    """Where a flow's code lives: workers import ``module`` from ``path`` before running tasks."""

    name: str
    path: str = ""
    module: str = ""
    code_hash: str = ""


@dataclass(frozen=True, slots=True)
class Wait:
    """A task waiting for its time: a retry's back-off, or a sensor between pokes."""

    task: str
    why: str
    """``retrying`` (a back-off) or ``sensing`` (a reschedule-mode sensor between pokes)."""
    seconds: float
    """Seconds left until it is queued again."""

    def describe(self) -> str:
        """``flaky retrying in 6 s`` / ``wait_for_drop pokes again in 30 s``."""
        left = max(0, round(self.seconds))
        if self.why == "sensing":
            return f"{self.task} pokes again in {left} s"
        return f"{self.task} {self.why} in {left} s"


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot of a run for live displays."""

    run_id: str
    total: int
    done: int
    failed: int
    running: tuple[str, ...]
    waiting: tuple[Wait, ...] = ()
    """Tasks waiting for a retry's back-off or a sensor's next poke, soonest first."""

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed - len(self.running)


ProgressHook = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class RunnerOptions:
    """Tuning of the runner; the defaults suit a person at a terminal.

    Attributes:
        heartbeat_every: seconds between lease renewals.
        stale_after: a lease not renewed for this long may be taken over (the heartbeat
            timeout); a runner that could not renew its own for three quarters of it stops.
        faults: named points at which to kill this process (crash tests only).
        seed: seed of the random draws for retry jitter (None: from the OS).
        use_cache: reuse cached outputs (``rota run --no-cache`` turns it off; keys are still
            recorded).
        slot_group: a limit on task slots shared with other runs (a scheduler's
            ``--parallelism``), if any.
        slot_poll: seconds between looks for pool slots while ready tasks wait for other runs'.
    """

    heartbeat_every: float = 5.0
    stale_after: timedelta = timedelta(seconds=60)
    faults: FaultPoints = field(default_factory=lambda: NO_FAULTS)
    seed: int | None = None
    use_cache: bool = True
    slot_group: SlotGroup | None = None
    slot_poll: float = SLOT_POLL
    host: str | None = None
    """The machine's name in this runner's id (None: its host name)."""
    inline_output_max: int = INLINE_LIMIT
    """Outputs whose bytes are at most this many are kept in the attempt's row, committed with
    its success, instead of a file each (``ROTA_INLINE_OUTPUT_MAX``; 0: always a file)."""


def new_run_id(now: datetime) -> str:
    """A sortable, readable run id: UTC time plus a random suffix."""
    # 40 random bits: a scheduler creating thousands of runs in one second stays collision-free
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(5)}"


def dag_tasks(dag: Dag) -> list[NewTask]:
    """The task rows a new run of *dag* starts with."""
    return [
        NewTask(tid, spec.op.kind, spec.op.code_hash(), upstream=spec.upstream)
        for tid, spec in dag.tasks.items()
    ]


def create_run(
    store: Store,
    flow: FlowRef,
    tasks: Sequence[NewTask],
    params: Mapping[str, Any],
    now: datetime,
    *,
    run_id: str | None = None,
    timing: RunTiming | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> RunRecord:
    """Create a queued run of *flow* with *tasks*; a random run id found taken is drawn again.

    The store keeps *params* without their secrets (:func:`rota.model.secrets.stored_params`): a
    secret parameter equal to its entry in *defaults* is marked as the flow's default, which a
    resume takes from the flow again; any other must be given again.

    Raises:
        RunExists: *timing* names a logical date the flow has a run for already.
        RunIdTaken: *run_id* was given and is taken, or three drawn ids in a row were.
    """
    stored = stored_params(params, defaults)
    for _ in range(1 if run_id is not None else 3):
        try:
            return store.create_run(
                run_id or new_run_id(now), flow.name, stored, tasks, now,
                flow_path=flow.path, flow_hash=flow.code_hash, timing=timing,
            )  # fmt: skip
        except RunIdTaken:
            if run_id is not None:
                raise
    raise RunIdTaken(f"could not draw a free run id for flow {flow.name!r}")


class Runner:
    """Creates runs and drives them to the end with one executor."""

    def __init__(
        self,
        store: Store,
        executor: Executor,
        *,
        home: Path,
        clock: Clock,
        on_progress: ProgressHook | None = None,
        progress_every: float = 0.1,
        options: RunnerOptions | None = None,
        artifacts: str | None = None,
        ui_url: str = "",
    ) -> None:
        self.store = store
        self.ui_url = ui_url
        """Where the web UI runs (``ROTA_UI_URL``): callbacks are given a link to the run's page."""
        # sensors that read the store are poked here, in the engine, whatever *executor* is
        self.executor = RoutedExecutor(executor, EngineSensors(store))
        self.home = home
        self.artifacts_root = artifacts or str(home / "artifacts")
        self.artifacts = open_artifact_store(self.artifacts_root)
        self.logs_dir = home / "logs"
        self.checkpoints_dir = home / "checkpoints"
        self.clock = clock
        self.on_progress = on_progress
        self.progress_every = progress_every
        self.options = options or RunnerOptions()
        self.me = RunnerId.current(self.options.host)
        self.rng = random.Random(self.options.seed)

    def create(
        self,
        dag: Dag,
        flow: FlowRef,
        run_id: str | None = None,
        timing: RunTiming | None = None,
    ) -> RunRecord:
        """Record a new run of *dag*: the run row and one scheduled attempt per task.

        Raises:
            RunExists: *timing* names a logical date the flow has a run for already.
        """
        now = self.clock.now()
        self.store.upsert_flow(flow.name, flow.path, flow.code_hash, now)
        return create_run(
            self.store, flow, dag_tasks(dag), dag.params, now,
            run_id=run_id, timing=timing, defaults=dag.param_defaults,
        )  # fmt: skip

    def run(self, dag: Dag, flow: FlowRef, run_id: str | None = None) -> RunSummary:
        """Create a run of *dag* and drive it to the end."""
        record = self.create(dag, flow, run_id)
        self.options.faults.hit("run_created")
        return self.drive(record.run_id, dag, flow)

    def drive(self, run_id: str, dag: Dag, flow: FlowRef) -> RunSummary:
        """Take the run's lease and run every task that is not finished yet.

        Raises:
            RunBusy: another live runner drives the run.
        """
        taken = acquire(self.store, run_id, self.me, self.clock.now(), self.options.stale_after)
        if taken.previous is not None:
            latest = latest_attempts(self.store.attempts(run_id))
            sweep = sweep_stale(taken.run, latest, self.clock.now())
            self.store.apply(sweep.changes, sweep.run_changes, at=self.clock.now())
            remove_leftovers(dag, run_id)  # the dead runner's containers and pods
        return self._drive_owned(run_id, dag, flow)

    def resume(
        self,
        run_id: str,
        dag: Dag,
        flow: FlowRef,
        on_plan: Callable[[ResumePlan], None] | None = None,
        params: ParamChange | None = None,
    ) -> RunSummary:
        """Continue a failed or interrupted run, re-running only what must run again.

        *params* (``rota resume -p``) changes parameters for the tasks that run again: the
        change is recorded on the run before the tasks to re-run are, so a resume killed
        between the two runs them with the new values too.

        Raises:
            RunBusy: another live runner drives the run.
            UserError: the run succeeded (nothing to resume).
        """
        now = self.clock.now()
        taken = acquire(self.store, run_id, self.me, now, self.options.stale_after)
        try:
            if taken.run.state is RunState.SUCCESS:
                raise UserError(
                    f"run {run_id} succeeded; nothing to resume "
                    f"(rota clear {run_id} --task ID re-runs chosen tasks)"
                )
            remove_leftovers(dag, run_id)  # a killed runner's containers and pods: ours now
            plan = plan_resume(taken.run, dag, self.store.attempts(run_id), now)
            if params is not None and params.changes:
                self.store.set_run_params(run_id, params.stored, params.changes, now)
            self.store.add_attempts(plan.changes, plan.new, plan.run_changes, at=now)
        except BaseException:
            self.store.release(run_id, str(self.me))
            raise
        if on_plan is not None:
            on_plan(plan)
        return self._drive_owned(run_id, dag, flow)

    def _drive_owned(self, run_id: str, dag: Dag, flow: FlowRef) -> RunSummary:
        from rota.engine.loop import RunLoop
        from rota.engine.steer import CancelWatch

        me = str(self.me)
        # a cancel asked since we began driving: the loop stops at its next turn
        cancel = CancelWatch(self.store, run_id, since=self.clock.now())
        writer = BatchWriter(
            self.store,
            self.clock.now,
            lease=Lease(run_id, me),
            every=self.options.heartbeat_every,
            fence_after=fence_after(self.options.stale_after),
            watch=cancel.check,
        )
        masker = Masker.of_params(dag.params)
        masker.add_secrets(dag.params, os.environ)  # what a callback might read and print
        callbacks = CallbackRunner(self.logs_dir / run_id / CALLBACKS_LOG, redact=masker.redact)
        run = self.store.get_run(run_id)
        book = SlotBook(
            self.store, run, me, self.clock, self.options.stale_after, is_dead,
            self.options.slot_group, self.options.slot_poll,
        )  # fmt: skip
        loop = RunLoop(self, run, dag, flow, writer, callbacks, book)
        loop.cancel = cancel
        lost = False
        try:
            loop.start()
            loop.run()
            loop.finish_run()
            writer.close()
        except BaseException as err:
            lost = isinstance(err, LeaseLost)
            loop.abort()
            raise
        finally:
            callbacks.close()
            self.executor.sensors.close()
            _give_back(book)
            if not lost:  # a lost lease is not ours to release (and may be out of reach)
                _release(self.store, run_id, me)
        return summarize(self.store, run_id)


def _give_back(book: SlotBook) -> None:
    """Give back the run's slots; if the store cannot be reached, they stop counting once the
    run's lease is released or stale (the error that stopped the run matters more)."""
    try:
        book.close()
    except StoreError as err:
        print(f"rota: could not give back pool slots: {safe_text(err)}", file=sys.stderr)


def _release(store: Store, run_id: str, me: str) -> None:
    """Give up the lease of *run_id*, printing why not if the store refuses: the run's error
    matters more, and a lease left behind is taken over once its heartbeat stops."""
    try:
        store.release(run_id, me)
    except StoreError as err:
        print(f"rota: could not release run {run_id}: {safe_text(err)}", file=sys.stderr)


def clear_tasks(
    store: Store,
    run_id: str,
    dag: Dag,
    task_ids: Iterable[str],
    *,
    now: datetime,
    downstream: bool = False,
    upstream: bool = False,
    stale_after: timedelta = timedelta(seconds=30),
    instances: Mapping[str, Iterable[int]] | None = None,
) -> list[str]:
    """Reset *task_ids* (and their cones) of *run_id* so that a resume runs them again.

    Each cleared task gets a new attempt marked as cleared: its retry budget starts again there,
    as Airflow's clear gives a task its full retries. Tasks not run yet are left as they are.
    A mapped task's instances that did not succeed run again; so do those *instances* names
    (``rota clear RUN --task 'fit[3]'``: task id -> map indexes), even if they succeeded.
    The run is queued again for the resume.

    Returns:
        The cleared task ids, in topological order.

    Raises:
        NotFound: a task id is not in the flow, or a named instance is not in the run.
        RunBusy: another live runner drives the run.
    """
    chosen = task_cones(dag, task_ids, downstream=downstream, upstream=upstream)
    me = RunnerId.current()
    taken = acquire(store, run_id, me, now, stale_after)
    try:
        records = store.attempts(run_id)
        _check_instances(run_id, records, instances or {})
        plan = sweep_stale(taken.run, latest_by_key(records), now)  # what a dead runner left
        queue_again(plan, taken.run, now)
        new = cleared_attempts(run_id, dag, chosen, records, now, instances)
        store.add_attempts(plan.changes, new, plan.run_changes, at=now)
    finally:
        store.release(run_id, str(me))
    return chosen


def _check_instances(
    run_id: str, records: Iterable[AttemptRecord], instances: Mapping[str, Iterable[int]]
) -> None:
    """Raise NotFound for an instance *instances* names that the run does not have."""
    have = {(r.task_id, r.map_index) for r in records}
    for tid, indexes in instances.items():
        for index in indexes:
            if (tid, index) not in have:
                raise NotFound(f"task {tid!r} of run {run_id} has no instance {index}")


def queue_again(plan: ResumePlan, run: RunRecord, now: datetime) -> None:
    """Add to *plan* the run change that queues *run* for a resume (after *plan*'s sweep)."""
    state = RunState.INTERRUPTED if plan.run_changes else run.state
    if state is not RunState.QUEUED:
        plan.run_changes.append(RunChange(run.run_id, state, RunState.QUEUED, now))


def task_cones(dag: Dag, task_ids: Iterable[str], *, downstream: bool, upstream: bool) -> list[str]:
    """*task_ids* with their downstream and/or upstream cones, in topological order.

    Raises:
        NotFound: a task id is not in the flow.
    """
    chosen: set[str] = set()
    for tid in task_ids:
        if tid not in dag.tasks:
            raise NotFound(f"flow {dag.name!r} has no task {tid!r}")
        chosen.add(tid)
    stack = list(chosen)
    while stack:
        tid = stack.pop()
        nxt: list[str] = []
        if downstream:
            nxt.extend(dag.downstream(tid))
        if upstream:
            nxt.extend(dag.tasks[tid].upstream)
        for other in nxt:
            if other not in chosen:
                chosen.add(other)
                stack.append(other)
    return [tid for tid in dag.order if tid in chosen]
