"""Schedulers on one real PostgreSQL, stepped on a fake clock, with real driver processes: a run
whose driver's machine went away is taken over only once its heartbeat stood still for the
timeout as the scheduler watched it (no pid can be checked on another host), its running attempt
marked interrupted and run again; two schedulers ticking at once claim each run once and keep
max_active_runs between them."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from schedhelp import rota_env, runs_locked, write_flow

from rota.engine.flowdir import FlowFolder
from rota.engine.launcher import DriverLauncher, Ended
from rota.engine.runner import create_run
from rota.engine.scheduler import Scheduler, SchedulerOptions
from rota.model.states import RunState, TaskState
from rota.store.base import Change, NewTask, RunChange, RunTiming
from rota.store.sql import SqlStore, open_store
from rota.testing import FakeClock

pytestmark = pytest.mark.postgres
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(seconds=60)

ONE_TASK = """
from rota import flow, task

@task
def only() -> int:
    return 7

@flow
def remote():
    only()
"""

PAIRS = """
import time
from rota import flow, task

@task
def nap() -> None:
    time.sleep(0.3)

@flow(max_active_runs=2)
def pairs():
    nap()
"""


def _scheduler(
    store: SqlStore, flows: Path, home: Path, clock: FakeClock, url: str, host: str = "node-a"
) -> Scheduler:
    """A scheduler as if on machine *host* (two in one test process are two machines)."""
    env = rota_env(home, ROTA_DATABASE_URL=url, ROTA_WORKERS="1")
    launcher = DriverLauncher(env, home / "logs" / "drivers")
    options = SchedulerOptions(max_active_runs=4, exclusive=False, stale_after=TIMEOUT, host=host)
    return Scheduler(store, FlowFolder(flows, parse_timeout=30), launcher, clock, options)


def _queue_runs(store: SqlStore, folder: Path, flow: str, count: int) -> list[str]:
    info = FlowFolder(folder, parse_timeout=30).scan().flows[flow]
    tasks = [NewTask(tid, kind, code) for tid, kind, code in info.tasks or ()]
    store.upsert_flow(info.name, info.path, info.code_hash, T0)
    made = []
    for i in range(count):
        when = T0 + timedelta(hours=i)
        timing = RunTiming(when, when, when, "triggered")
        made.append(create_run(store, info.ref(), tasks, {}, T0, timing=timing).run_id)
    return made


def _drain(sched: Scheduler, timeout: float = 120) -> list[Ended]:
    ended: list[Ended] = []
    deadline = time.monotonic() + timeout
    while sched.launcher.active() and time.monotonic() < deadline:
        ended.extend(sched.launcher.wait_any(0.5))
    assert not sched.launcher.active(), "drivers still running"
    return ended


def test_a_run_whose_host_went_away_is_taken_over_once_its_heartbeat_stood_still(
    postgres_url: str, tmp_path: Path
) -> None:
    flows, home = tmp_path / "flows", tmp_path / "home"
    write_flow(flows, "remote.py", ONE_TASK)
    clock = FakeClock(T0)
    with open_store(postgres_url, statement_timeout=0.5) as store:
        (run_id,) = _queue_runs(store, flows, "remote", 1)
        # its driver on another machine had started the task when that machine went away; that
        # machine's clock ran days ahead of ours
        far, far_clock = "far-host:4242:1234.0123456789ab", T0 + timedelta(days=3)
        assert store.acquire(run_id, far, expect=None, at=far_clock)
        (first,) = store.attempts(run_id)
        store.apply(
            [Change(first.id, TaskState.SCHEDULED, TaskState.QUEUED),
             Change(first.id, TaskState.QUEUED, TaskState.RUNNING, {"started_at": T0})],
            [RunChange(run_id, RunState.QUEUED, RunState.RUNNING, T0)],
            at=T0,
        )  # fmt: skip
        sched = _scheduler(store, flows, home, clock, postgres_url)
        try:
            assert sched.tick().launched == []  # first sight of its heartbeat
            clock.advance(timedelta(seconds=59))
            assert sched.tick().launched == []
            # it was alive after all and renews: the count starts again from here
            assert store.heartbeat(run_id, far, far_clock + timedelta(seconds=5))
            clock.advance(timedelta(seconds=30))
            assert sched.tick().launched == []
            clock.advance(timedelta(seconds=40))
            assert sched.tick().launched == []  # 40 s since the renewal was seen
            # the scheduler loses sight of the store for a tick: its owner may have, too
            with runs_locked(store):
                lost = sched.tick()
            assert lost.store_error and lost.outage_began and lost.launched == []
            clock.advance(timedelta(seconds=30))
            back = sched.tick()
            assert back.recovered_after == 30 and back.launched == []  # watched afresh
            clock.advance(timedelta(seconds=59))
            assert sched.tick().launched == []
            clock.advance(timedelta(seconds=1))
            assert sched.tick().launched == [run_id]
            assert [e.code for e in _drain(sched)] == [0]
        finally:
            sched.close()
        run = store.get_run(run_id)
        attempts = store.attempts(run_id)
    assert (run.state, run.owner) == (RunState.SUCCESS, None)
    assert [(a.try_number, a.state) for a in attempts] == [
        (1, TaskState.INTERRUPTED),
        (2, TaskState.SUCCESS),
    ]


def test_two_schedulers_ticking_at_once_claim_each_run_once_within_max_active_runs(
    postgres_url: str, tmp_path: Path
) -> None:
    flows, home = tmp_path / "flows", tmp_path / "home"
    write_flow(flows, "pairs.py", PAIRS)
    clock = FakeClock(T0)
    with open_store(postgres_url) as first, open_store(postgres_url) as second:
        run_ids = _queue_runs(first, flows, "pairs", 6)
        scheds = [
            _scheduler(s, flows, home, clock, postgres_url, host)
            for s, host in ((first, "node-a"), (second, "node-b"))
        ]
        launched: list[list[str]] = [[], []]
        ended: list[Ended] = []
        barrier = threading.Barrier(2)

        def tick(i: int) -> None:
            barrier.wait()
            launched[i].extend(scheds[i].tick().launched)

        try:
            deadline = time.monotonic() + 240
            while not all(first.get_run(r).state is RunState.SUCCESS for r in run_ids):
                assert time.monotonic() < deadline, "runs did not finish"
                threads = [threading.Thread(target=tick, args=(i,)) for i in (0, 1)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                owned = [r for r in run_ids if first.get_run(r).owner is not None]
                assert len(owned) <= 2, owned
                for sched in scheds:
                    ended.extend(sched.launcher.wait_any(0.3))
            for sched in scheds:
                ended.extend(_drain(sched))
        finally:
            for sched in scheds:
                sched.close()
        runs = [first.get_run(r) for r in run_ids]
    assert sorted(launched[0] + launched[1]) == sorted(run_ids), "each run claimed once"
    assert all(e.code == 0 for e in ended), ended  # no driver found its run taken (3)
    intervals = sorted((r.started_at, r.ended_at) for r in runs if r.started_at and r.ended_at)
    assert len(intervals) == 6
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running, most = 0, 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert most <= 2, "max_active_runs=2 held across both schedulers"


def test_a_run_whose_driver_was_killed_on_this_machine_is_taken_over_at_once(
    postgres_url: str, tmp_path: Path
) -> None:
    flows, home = tmp_path / "flows", tmp_path / "home"
    write_flow(flows, "remote.py", ONE_TASK)
    # a real process on this machine ("node-a") names itself, then dies by SIGKILL
    code = (
        "import sys, time\nfrom rota.engine.lease import RunnerId\n"
        "print(RunnerId.current('node-a'), flush=True)\ntime.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    dead = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    clock = FakeClock(T0)
    with open_store(postgres_url) as store:
        (run_id,) = _queue_runs(store, flows, "remote", 1)
        assert store.acquire(run_id, dead, expect=None, at=T0)
        (first,) = store.attempts(run_id)
        store.apply(
            [Change(first.id, TaskState.SCHEDULED, TaskState.QUEUED),
             Change(first.id, TaskState.QUEUED, TaskState.RUNNING, {"started_at": T0})],
            [RunChange(run_id, RunState.QUEUED, RunState.RUNNING, T0)],
            at=T0,
        )  # fmt: skip
        sched = _scheduler(store, flows, home, clock, postgres_url, host="node-a")
        try:
            # no waiting for a heartbeat timeout: its process is provably gone
            assert sched.tick().launched == [run_id]
            assert [e.code for e in _drain(sched)] == [0]
        finally:
            sched.close()
        run = store.get_run(run_id)
        attempts = store.attempts(run_id)
    assert (run.state, run.owner) == (RunState.SUCCESS, None)
    assert [(a.try_number, a.state) for a in attempts] == [
        (1, TaskState.INTERRUPTED),
        (2, TaskState.SUCCESS),
    ]
