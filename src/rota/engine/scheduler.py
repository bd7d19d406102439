"""The scheduler daemon: from a folder of flow files to runs, on a clock.

Each :meth:`Scheduler.tick` rescans the folder (files parse in subprocesses, see
:mod:`rota.engine.flowdir`), creates the runs that fell due, and starts a driver process for each
run that is ready (see :mod:`rota.engine.launcher`), within ``max_active_runs`` per flow and the
scheduler's own ``max_active_runs`` (over all flows). The scheduler's ``--parallelism`` (task
slots over all its runs) is enforced by its drivers, through the store (:mod:`rota.engine.slots`).

Run creation is idempotent: the store's unique key on (flow, logical date) refuses a second run
for one interval, so a tick processed twice (a crash between creating a run and anything else, or
two schedulers on PostgreSQL) makes one run. On SQLite only one scheduler may run: it holds the
``scheduler`` lock in the store, renewed every tick; a second one refuses to start and names the
holder. On PostgreSQL several may run at once:

* a scheduler *claims* a run in the store before it starts a driver for it (a conditional update
  checked by its row count: of two schedulers, one wins), and the driver takes the claim over;
  the scheduler renews its claims every tick until then. ``max_active_runs`` is counted in the
  store, in the claim's transaction, so it holds across schedulers.
* a run whose owner is dead is taken over: at once when it provably died on this machine,
  otherwise once its heartbeat stayed unchanged for ``stale_after`` as this scheduler watched it
  (:class:`~rota.engine.lease.LeaseWatch`). The new driver marks the attempts the dead one left
  running ``interrupted`` and runs them again.
* when the store is out of reach (:class:`~rota.errors.StoreUnavailable`: an outage, a lock or
  statement timeout, a deadlock), a tick says so and does nothing else; the next tick tries again.
  Drivers go on running (their writers wait for the store), and no lease is judged expired until
  it has been watched for ``stale_after`` after the store came back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rota.engine.datasets import waiting_on
from rota.engine.flowdir import FlowFolder, FlowInfo, ScanResult
from rota.engine.launcher import BENIGN_EXITS, DriverLauncher, Ended
from rota.engine.lease import UNFINISHED, LeaseWatch, RunnerId, provably_dead
from rota.engine.runner import create_run
from rota.errors import RunExists, StoreError, StoreUnavailable, UserError
from rota.model.safetext import safe_text
from rota.model.schedule import Clock, Interval
from rota.model.states import RunState
from rota.store.base import Claim, NewTask, RunRecord, RunTiming, Store

LOCK_NAME = "scheduler"
DRIVEN_TYPES = frozenset({"scheduled", "triggered", "dataset"})
"""Run types the scheduler drives (backfill runs belong to their backfill, manual ones to
``rota run``)."""
_ACTIVE = (RunState.QUEUED, RunState.RUNNING)
_UNFINISHED = (RunState.QUEUED, RunState.RUNNING, RunState.INTERRUPTED)
MAX_LAUNCHES = 3
"""A run whose driver fails this many times (its flow no longer loads, ...) is left alone until
the scheduler restarts; the driver's log says why."""


class SchedulerBusy(UserError):
    """Raised when another scheduler holds the store's scheduler lock."""


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    """How the daemon behaves.

    Attributes:
        max_active_runs: the most runs this scheduler drives at once, over all flows (its
            ``--max-active-runs``; before pools, ``--parallelism`` meant this).
        tick: seconds between ticks.
        lock_stale_after: a lock whose heartbeat is older than this (seconds) is taken over.
        exclusive: hold the single-scheduler lock (required on SQLite).
        stale_after: the heartbeat timeout: a run whose owner's heartbeat stayed unchanged this
            long (watched from here) is taken over.
        host: the machine's name in this scheduler's id (None: its host name).
    """

    max_active_runs: int = 16
    tick: float = 5.0
    lock_stale_after: float = 60.0
    exclusive: bool = True
    stale_after: timedelta = timedelta(seconds=60)
    host: str | None = None


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
    store_error: str | None = None
    """Why the store could not be used in this tick (it did nothing else; the next tries again)."""
    outage_began: bool = False
    """Whether this is the first tick of an outage (the ones before it reached the store)."""
    recovered_after: float | None = None
    """On the first tick that reached the store after an outage: seconds since it began."""


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
        self.me = str(RunnerId.current(self.options.host))
        self.watch = LeaseWatch(self.options.stale_after, clock)
        self._errors: dict[str, str] = {}
        self._locked = False
        self._broken: dict[str, int] = {}
        """Runs whose drivers exited with an error (not a run outcome), and how often."""
        self._unreleased: set[str] = set()
        """Runs whose drivers ended: our claim on them (if the driver never took it) to drop."""
        self._down_since: float | None = None

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
            if other is None or not provably_dead(other, self.options.host):
                raise SchedulerBusy(
                    f"another scheduler is running ({holder}); one scheduler per SQLite store "
                    "(stop it, or use PostgreSQL for several)"
                )
            self.store.release_lock(LOCK_NAME, holder)
            self.store.take_lock(LOCK_NAME, self.me, now, self.options.lock_stale_after)
        self._locked = True

    def close(self) -> None:
        """Stop the drivers (their runs are interrupted, to be resumed), drop the claims they did
        not take over, and release the lock (best effort: the store may be out of reach)."""
        self._unreleased.update(self.launcher.active())
        self.launcher.close()
        try:
            self._release_claims()
            if self._locked:
                self.store.release_lock(LOCK_NAME, self.me)
                self._locked = False
        except StoreError:  # claims left behind are taken over once their heartbeat stops
            pass

    # --- one tick ------------------------------------------------------------------------------
    def tick(self) -> TickReport:
        """Scan, create due runs, start ready ones; see the module docstring.

        Raises:
            SchedulerBusy: the lock was taken over by another scheduler.
        """
        now = self.clock.now()
        report = TickReport(now)
        scan = self._scan(report)
        report.ended = self._reap()
        try:
            self._tick_store(report, scan, now)
        except StoreUnavailable as err:
            self._store_lost(report, err)
        else:
            self._store_reached(report)
        if self.on_tick is not None:
            self.on_tick(report)
        return report

    def _scan(self, report: TickReport) -> ScanResult:
        scan = self.folder.scan()
        report.errors = dict(scan.errors)
        report.flows, report.rescanned = len(scan.flows), scan.changed
        report.new_errors = {p: e for p, e in scan.errors.items() if self._errors.get(p) != e}
        self._errors = dict(scan.errors)
        return scan

    def _reap(self) -> list[Ended]:
        ended = self.launcher.reap()
        for end in ended:
            self._unreleased.add(end.run_id)
            if end.code not in BENIGN_EXITS:
                self._broken[end.run_id] = self._broken.get(end.run_id, 0) + 1
        return ended

    def _tick_store(self, report: TickReport, scan: ScanResult, now: datetime) -> None:
        """The part of a tick that uses the store.

        Raises:
            StoreUnavailable: the store is out of reach (the rest of the tick is skipped).
            SchedulerBusy: the lock was taken over.
        """
        if self._locked and not self.store.renew_lock(LOCK_NAME, self.me, now):
            raise SchedulerBusy("another scheduler took over the scheduler lock; stopping")
        self._release_claims()
        self.store.renew_claims(self.me, sorted(self.launcher.active()), now)
        paused = self.store.paused_flows()  # rota pause: no new runs, none of its runs started
        flows = {name: info for name, info in scan.flows.items() if name not in paused}
        for info in sorted(flows.values(), key=lambda i: i.name):
            report.created.extend(self.create_due(info, now))
        report.launched = self.launch_ready(flows, now)

    def _release_claims(self) -> None:
        """Drop our claim on runs whose drivers ended before taking it over (a no-op for the
        others: the claim is conditional on our holding it)."""
        for run_id in sorted(self._unreleased):
            self.store.release(run_id, self.me)
            self._unreleased.discard(run_id)

    def _store_lost(self, report: TickReport, err: StoreUnavailable) -> None:
        report.store_error = safe_text(err)
        if self._down_since is None:
            self._down_since = self.clock.monotonic()
            report.outage_began = True
        self.watch.forget_all()  # owners were cut off too, likely: watch them afresh

    def _store_reached(self, report: TickReport) -> None:
        if self._down_since is not None:
            report.recovered_after = self.clock.monotonic() - self._down_since
            self._down_since = None

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
        """Claim runs that are ready, oldest logical date first, within limits, and start a
        driver for each run claimed."""
        driving = self.launcher.active()
        held, candidates = self._survey(flows, driving)
        launched: list[str] = []
        for run in candidates:
            if len(driving) + len(launched) >= self.options.max_active_runs:
                break
            # max_active_runs bounds the runs that start; a takeover replaces a dead owner
            limit = flows[run.flow].max_active_runs if run.owner is None else None
            if limit is not None and held[run.flow] >= limit:
                continue
            claim = Claim(run.run_id, run.owner, run.heartbeat_at)
            if not self.store.claim_run(claim, self.me, now, flow_limit=limit):
                continue  # another scheduler was faster, or the flow is at its limit
            self.launcher.launch(run.run_id, claim=self.me)
            held[run.flow] += 1
            launched.append(run.run_id)
        return launched

    def _survey(
        self, flows: Mapping[str, FlowInfo], driving: set[str]
    ) -> tuple[Counter[str], list[RunRecord]]:
        """Per flow, how many of its runs someone drives; and the runs we may take, in order."""
        held: Counter[str] = Counter()
        candidates: list[RunRecord] = []
        unfinished = self.store.runs_in_states(_UNFINISHED)
        self.watch.keep_only({r.run_id for r in unfinished})
        for run in unfinished:
            if run.run_id not in driving and run.flow in flows and self._ready(run):
                candidates.append(run)
            elif run.owner is not None:
                held[run.flow] += 1
        candidates.sort(key=lambda r: (r.logical_date or r.created_at, r.run_id))
        return held, candidates

    def _ready(self, run: RunRecord) -> bool:
        """Whether *run* is ours to drive: unowned, or its owner is gone (see the module
        docstring). Called for every unfinished run each tick: it feeds the lease watch."""
        if run.run_type not in DRIVEN_TYPES or self._broken.get(run.run_id, 0) >= MAX_LAUNCHES:
            return False
        if run.owner is None:
            return run.state in UNFINISHED  # a running run without an owner was orphaned
        if run.owner == self.me:
            return True  # our claim, whose driver ended before taking it (release failed)
        owner = RunnerId.parse(run.owner)
        if owner is not None and provably_dead(owner, self.options.host):
            return True
        return self.watch.expired(run)


def _scheduled(interval: Interval) -> RunTiming:
    return RunTiming(interval.start, interval.start, interval.end, "scheduled")
