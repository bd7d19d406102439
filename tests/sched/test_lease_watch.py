"""Telling whether a run's owner is gone: a runner id names its machine by host name and boot id
(so another machine of the same name never looks like ours); a lease watched from here expires
only after its heartbeat stood still for the timeout on our own clock, however far the owner's
clock is off, and the count starts again after the watcher lost sight of the store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from rota.engine.lease import (
    LeaseWatch,
    RunnerId,
    fence_after,
    heartbeat_every,
    provably_dead,
)
from rota.model.states import RunState
from rota.store.base import RunRecord
from rota.testing import FakeClock

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(seconds=60)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_runner_id_names_this_machine_by_host_name_and_boot_id() -> None:
    me = RunnerId.current()
    assert me.host == socket.gethostname() and me.pid == os.getpid()
    ticks, _, boot = me.start.partition(".")
    assert ticks.isdigit() and len(boot) == 12
    assert RunnerId.parse(str(me)) == me
    assert not provably_dead(me)  # alive
    gone = RunnerId(me.host, _dead_pid(), me.start)
    assert provably_dead(gone)
    # the same host name with another boot id: another machine (or a reboot): not provable
    elsewhere = RunnerId(me.host, gone.pid, f"{ticks}.ffffffffffff")
    assert not provably_dead(elsewhere)
    assert not provably_dead(RunnerId("another-host", gone.pid, me.start))
    # an id written before boot ids were recorded is judged by its name, as then
    assert provably_dead(RunnerId(me.host, gone.pid, ticks))
    # a machine name given by configuration: ids made and judged under that name
    named = RunnerId.current("node-7")
    assert named.host == "node-7" and not provably_dead(named, "node-7")
    assert provably_dead(RunnerId("node-7", gone.pid, me.start), "node-7")
    assert not provably_dead(RunnerId("node-7", gone.pid, me.start))  # not our name


def _run(owner: str | None, beat: datetime | None) -> RunRecord:
    return RunRecord("r1", "f", RunState.RUNNING, {}, T0, owner=owner, heartbeat_at=beat)


def test_a_lease_expires_after_its_heartbeat_stood_still_for_the_timeout_here() -> None:
    clock = FakeClock(T0)
    watch = LeaseWatch(TIMEOUT, clock)
    skewed = T0 + timedelta(days=3)  # the owner's clock is days ahead: it does not matter
    assert not watch.expired(_run("far:1:2.abc", skewed))  # first sight
    clock.advance(timedelta(seconds=59))
    assert not watch.expired(_run("far:1:2.abc", skewed))
    clock.advance(timedelta(seconds=1))
    assert watch.expired(_run("far:1:2.abc", skewed))
    # the owner renews: a full timeout again from the moment we saw it
    renewed = skewed + timedelta(seconds=5)
    assert not watch.expired(_run("far:1:2.abc", renewed))
    clock.advance(timedelta(seconds=59))
    assert not watch.expired(_run("far:1:2.abc", renewed))
    # another owner took it (same heartbeat value): a new lease to watch
    assert not watch.expired(_run("near:3:4.def", renewed))
    clock.advance(timedelta(seconds=60))
    assert watch.expired(_run("near:3:4.def", renewed))


def test_losing_sight_of_the_store_starts_every_count_again() -> None:
    clock = FakeClock(T0)
    watch = LeaseWatch(TIMEOUT, clock)
    old = T0 - timedelta(hours=2)  # stale by the wall clock long ago: not a reason by itself
    assert not watch.expired(_run("far:1:2.abc", old))
    clock.advance(timedelta(seconds=45))
    watch.forget_all()  # the store was out of reach: the owner may have been cut off too
    clock.advance(timedelta(seconds=30))
    assert not watch.expired(_run("far:1:2.abc", old))
    clock.advance(timedelta(seconds=60))
    assert watch.expired(_run("far:1:2.abc", old))
    watch.keep_only(set())
    assert not watch.expired(_run("far:1:2.abc", old))  # forgotten: first sight again


def test_a_runner_stops_before_anyone_may_take_its_run_over() -> None:
    for seconds in (1, 4, 60, 600):
        timeout = timedelta(seconds=seconds)
        every, fence = heartbeat_every(timeout), fence_after(timeout)
        assert 0 < every <= 5 and every * 3 < fence < seconds
