"""The scheduler daemon: from a folder of flow files to runs, on a clock.

Each :meth:`Scheduler.tick` rescans the folder (files parse in subprocesses, see
:mod:`rota.engine.flowdir`), creates the runs that fell due, and starts a driver process for each
run that is ready (see :mod:`rota.engine.launcher`), within ``max_active_runs`` per flow and the
scheduler's ``parallelism``.

Run creation is idempotent: the store's unique key on (flow, logical date) refuses a second run
for one interval, so a tick processed twice (a crash between creating a run and anything else, or
two schedulers on PostgreSQL) makes one run. On SQLite only one scheduler may run: it holds the
``scheduler`` lock in the store, renewed every tick; a second one refuses to start and names the
holder. A restarted scheduler resumes the runs its predecessor's drivers left interrupted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rota.engine.datasets import waiting_on
from rota.engine.flowdir import FlowFolder, FlowInfo
from rota.engine.launcher import DriverLauncher, Ended
from rota.engine.lease import RunnerId, provably_dead
from rota.engine.runner import create_run
from rota.errors import RunExists, UserError
from rota.model.schedule import Clock, Interval
from rota.model.states import RunState
from rota.store.base import NewTask, RunRecord, RunTiming, Store

LOCK_NAME = "scheduler"
DRIVEN_TYPES = frozenset({"scheduled", "triggered", "dataset"})
"""Run types the scheduler drives (backfill runs belong to their backfill, manual ones to
``rota run``)."""
_ACTIVE = (RunState.QUEUED, RunState.RUNNING)
MAX_LAUNCHES = 3
"""A run whose driver fails this many times (its flow no longer loads, ...) is left alone until
the scheduler restarts; the driver's log says why."""


class SchedulerBusy(UserError):
    """Raised when another scheduler holds the store's scheduler lock."""


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    """How the daemon behaves.

    Attributes:
        parallelism: the most runs this scheduler drives at once, over all flows.
        tick: seconds between ticks.
        lock_stale_after: a lock whose heartbeat is older than this (seconds) is taken over.
        exclusive: hold the single-scheduler lock (required on SQLite).
        stale_after: a run's lease not renewed for this long counts as abandoned.
    """

    parallelism: int = 16
    tick: float = 5.0
    lock_stale_after: float = 60.0
    exclusive: bool = True
    stale_after: timedelta = timedelta(seconds=30)


@dataclass
class TickReport:
    """What one tick did."""

    at: datetime
    created: list[RunRecord] = field(default_factory=list)
    launched: list[str] = field(default_factory=list)
    ended: list[Ended] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    """Files that fail to load (all of them, every tick)."""
    new_errors: dict[str, str] = field(default_factory=dict)
    """Files whose error is new or changed since the last tick."""
    flows: int = 0
    """How many good flows the folder holds."""
    rescanned: bool = False
    """Whether the folder changed since the last tick (files parsed again)."""


class Scheduler:
    """Creates and starts runs of the flows in a folder; see the module docstring."""

    def __init__(
        self,
        store: Store,
        folder: FlowFolder,
        launcher: DriverLauncher,
        clock: Clock,
        options: SchedulerOptions | None = None,
        on_tick: Callable[[TickReport], None] | None = None,
    ) -> None:
        self.store = store
        self.folder = folder
        self.launcher = launcher
        self.clock = clock
        self.options = options or SchedulerOptions()
        self.on_tick = on_tick
        self.me = str(RunnerId.current())
        self._errors: dict[str, str] = {}
        self._locked = False
        self._broken: dict[str, int] = {}
        """Runs whose drivers exited with an error (not a run outcome), and how often."""

    # --- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Take the scheduler lock (when exclusive).

        Raises:
            SchedulerBusy: another live scheduler holds it.
        """
        if not self.options.exclusive:
            return
        now = self.clock.now()
        holder = self.store.take_lock(LOCK_NAME, self.me, now, self.options.lock_stale_after)
        if holder is not None:
            other = RunnerId.parse(holder)
            if other is None or not provably_dead(other):
                raise SchedulerBusy(
                    f"another scheduler is running ({holder}); one scheduler per SQLite store "
                    "(stop it, or use PostgreSQL for several)"
                )
            self.store.release_lock(LOCK_NAME, holder)
            self.store.take_lock(LOCK_NAME, self.me, now, self.options.lock_stale_after)
        self._locked = True

    def close(self) -> None:
        """Stop the drivers (their runs are interrupted, to be resumed) and release the lock."""
        self.launcher.close()
        if self._locked:
            self.store.release_lock(LOCK_NAME, self.me)
            self._locked = False

    # --- one tick ------------------------------------------------------------------------------
    def tick(self) -> TickReport:
        """Scan, create due runs, start ready ones; see the module docstring.

        Raises:
            SchedulerBusy: the lock was taken over by another scheduler.
        """
        now = self.clock.now()
        if self._locked and not self.store.renew_lock(LOCK_NAME, self.me, now):
            raise SchedulerBusy("another scheduler took over the scheduler lock; stopping")
        report = TickReport(now)
        scan = self.folder.scan()
        report.errors = dict(scan.errors)
        report.flows, report.rescanned = len(scan.flows), scan.changed
        report.new_errors = {p: e for p, e in scan.errors.items() if self._errors.get(p) != e}
        self._errors = dict(scan.errors)
        report.ended = self.launcher.reap()
        for end in report.ended:
            if end.code not in (0, 1, 3, 130):
                self._broken[end.run_id] = self._broken.get(end.run_id, 0) + 1
        paused = self.store.paused_flows()  # rota pause: no new runs, none of its runs started
        flows = {name: info for name, info in scan.flows.items() if name not in paused}
        for info in sorted(flows.values(), key=lambda i: i.name):
            report.created.extend(self.create_due(info, now))
        report.launched = self.launch_ready(flows, now)
        if self.on_tick is not None:
            self.on_tick(report)
        return report

    def create_due(self, info: FlowInfo, now: datetime) -> list[RunRecord]:
        """Create the runs of *info* that are due at *now*, within its max_active_runs."""
        if info.tasks is None:
            return []
        timing = info.timing()
        room = timing.max_active_runs - len(self.store.runs_in_states(_ACTIVE, info.name))
        if room <= 0:
            return []
        if timing.schedule is not None:
            last = self.store.latest_logical_date(info.name, "scheduled")
            due = timing.schedule.due(now, last, catchup=timing.catchup)
            return self._create(info, [_scheduled(iv) for iv in due[:room]], now)
        if timing.datasets and not waiting_on(self.store, info.name, timing.datasets):
            made_for = RunTiming(now, now, now, "dataset", triggered_by=info.datasets)
            return self._create(info, [made_for], now)
        return []

    def _create(self, info: FlowInfo, timings: list[RunTiming], now: datetime) -> list[RunRecord]:
        made: list[RunRecord] = []
        tasks = [
            NewTask(tid, kind, code, upstream=info.upstream.get(tid, ()))
            for tid, kind, code in info.tasks or ()
        ]
        if timings:
            self.store.upsert_flow(info.name, info.path, info.code_hash, now)
        for timing in timings:
            run = self._create_one(info, tasks, timing, now)
            if run is None:  # this tick was processed before (or by another scheduler)
                continue
            made.append(run)
        return made

    def _create_one(
        self, info: FlowInfo, tasks: list[NewTask], timing: RunTiming, now: datetime
    ) -> RunRecord | None:
        """Create one run; None if the flow has a run for that logical date already."""
        try:
            return create_run(self.store, info.ref(), tasks, info.params, now, timing=timing)
        except RunExists:
            return None

    def launch_ready(self, flows: Mapping[str, FlowInfo], now: datetime) -> list[str]:
        """Start drivers for runs that are ready, oldest logical date first, within limits."""
        driving = self.launcher.active()
        per_flow: dict[str, int] = {}
        candidates: list[RunRecord] = []
        for run in self.store.runs_in_states(
            (RunState.QUEUED, RunState.RUNNING, RunState.INTERRUPTED)
        ):
            if run.run_id in driving:
                per_flow[run.flow] = per_flow.get(run.flow, 0) + 1
            elif run.flow in flows and self._ready(run, now):
                candidates.append(run)
        candidates.sort(key=lambda r: (r.logical_date or r.created_at, r.run_id))
        launched: list[str] = []
        for run in candidates:
            if len(driving) + len(launched) >= self.options.parallelism:
                break
            limit = flows[run.flow].max_active_runs
            if per_flow.get(run.flow, 0) >= limit:
                continue
            self.launcher.launch(run.run_id)
            per_flow[run.flow] = per_flow.get(run.flow, 0) + 1
            launched.append(run.run_id)
        return launched

    def _ready(self, run: RunRecord, now: datetime) -> bool:
        """Whether *run* is ours to drive: queued and unowned, or left by a dead driver."""
        if run.run_type not in DRIVEN_TYPES or self._broken.get(run.run_id, 0) >= MAX_LAUNCHES:
            return False
        if run.owner is None:
            return run.state in (RunState.QUEUED, RunState.INTERRUPTED)
        owner = RunnerId.parse(run.owner)
        if owner is not None and provably_dead(owner):
            return True
        beat = run.heartbeat_at
        return beat is None or now - beat > self.options.stale_after


def _scheduled(interval: Interval) -> RunTiming:
    return RunTiming(interval.start, interval.start, interval.end, "scheduled")
