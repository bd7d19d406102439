"""One runner per run: a lease in the store, held by a heartbeat, taken over from the dead.

A runner names itself ``host:pid:start``. ``start`` is the process's start time as the kernel
counts it and a short form of the kernel's boot id (``TICKS.BOOT``), so that neither a recycled
pid nor another machine that happens to have the same host name looks like a live runner here.

Whether the owner of a run is gone is judged in one of three ways:

* it is *provably dead*: it ran on this machine (same host name and boot id) and its process is
  gone. Its run is taken over at once.
* :class:`LeaseWatch` (the scheduler): its heartbeat stayed unchanged for the heartbeat timeout as
  measured on the watcher's own monotonic clock. No two hosts' clocks are compared, and a watcher
  that lost sight of the store starts counting again, since the owner was likely cut off too.
* :func:`acquire` (``rota resume``, ``rota clear``, a driver given no claim): its heartbeat is
  older than ``stale_after`` by the wall clock.

A runner keeps its lease by renewing it every :func:`heartbeat_every` seconds, and stops its
attempts once it could not renew it for :func:`fence_after` seconds, before anyone may take over.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from rota.errors import UserError
from rota.model.schedule import Clock
from rota.model.states import RunState
from rota.store.base import Claim, RunRecord, Store

UNFINISHED = frozenset({RunState.QUEUED, RunState.RUNNING, RunState.INTERRUPTED})
"""Run states in which a run is driven, or waits for a driver."""


class RunBusy(UserError):
    """Raised when a run is being driven by another live runner."""


@dataclass(frozen=True, slots=True)
class RunnerId:
    """Who drives a run: host, process id, and the process's start time (with the boot id)."""

    host: str
    pid: int
    start: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}"

    @classmethod
    def parse(cls, text: str) -> RunnerId | None:
        host, _, rest = text.rpartition(":")
        host, _, pid = host.rpartition(":")
        try:
            return cls(host, int(pid), rest)
        except ValueError:
            return None

    @classmethod
    def current(cls, host: str | None = None) -> RunnerId:
        """This process, on the machine named *host* (default: its host name)."""
        pid = os.getpid()
        ticks = _start_time(pid) or "?"
        boot = _boot_id()
        return cls(host or socket.gethostname(), pid, f"{ticks}.{boot}" if boot else ticks)


def _start_time(pid: int) -> str | None:
    """The start time of live process *pid* in clock ticks since boot (/proc/PID/stat field 22);
    None when there is no such process or it is a zombie (dead, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


@functools.cache
def _boot_id() -> str:
    """12 hex digits of the kernel's boot id, or "" where there is none (not Linux)."""
    try:
        text = Path("/proc/sys/kernel/random/boot_id").read_text()
    except OSError:
        return ""
    return text.strip().replace("-", "")[:12]


def provably_dead(owner: RunnerId, host: str | None = None) -> bool:
    """True when *owner* ran on this machine and its process is gone (or the pid was reused).

    This machine is the one named *host* (default: its host name) running since our boot; an
    owner recorded without a boot id is taken to be ours when the name matches.
    """
    if owner.host != (host or socket.gethostname()):
        return False
    ticks, _, boot = owner.start.partition(".")
    if (boot and boot != _boot_id()) or ticks == "?":
        return False  # another machine of the same name, or a start time we cannot check
    return _start_time(owner.pid) != ticks


def heartbeat_every(timeout: timedelta) -> float:
    """Seconds between a runner's lease renewals for a heartbeat *timeout*: a twelfth of it, at
    most 5."""
    return min(5.0, timeout.total_seconds() / 12)


def fence_after(timeout: timedelta) -> float:
    """Seconds a runner may fail to renew its lease before it stops its attempts: three quarters
    of the *timeout*, so that it has stopped before any watcher may take its run over."""
    return timeout.total_seconds() * 0.75


class LeaseWatch:
    """Tells when another runner's lease on a run expired, from its heartbeat seen from here.

    A lease expires once its (owner, heartbeat) stayed the same for *timeout* on *clock*'s
    monotonic time, watched without a break: :meth:`forget_all` (after losing sight of the store)
    starts every count again.
    """

    def __init__(self, timeout: timedelta, clock: Clock) -> None:
        self.timeout = timeout.total_seconds()
        self.clock = clock
        self._seen: dict[str, tuple[tuple[str | None, datetime | None], float]] = {}

    def expired(self, run: RunRecord) -> bool:
        """Whether *run*'s owner has not renewed its lease for the timeout (first sight: no)."""
        now = self.clock.monotonic()
        key = (run.owner, run.heartbeat_at)
        seen = self._seen.get(run.run_id)
        if seen is None or seen[0] != key:
            self._seen[run.run_id] = (key, now)
            return False
        return now - seen[1] >= self.timeout

    def forget_all(self) -> None:
        """Start every count again (the store was out of reach: owners may have been too)."""
        self._seen.clear()

    def keep_only(self, run_ids: Collection[str]) -> None:
        """Forget the runs not in *run_ids* (they ended, or were taken)."""
        self._seen = {k: v for k, v in self._seen.items() if k in run_ids}


def is_dead(owner: str) -> bool:
    """Whether runner id *owner* names a process of this host that is gone."""
    parsed = RunnerId.parse(owner)
    return parsed is not None and provably_dead(parsed)


@dataclass(frozen=True, slots=True)
class Takeover:
    """The outcome of acquiring a run: whether a previous runner's leftovers need sweeping."""

    run: RunRecord
    previous: str | None


def acquire(
    store: Store, run_id: str, me: RunnerId, now: datetime, stale_after: timedelta
) -> Takeover:
    """Make *me* the runner of *run_id*.

    Raises:
        RunBusy: another runner is alive and its heartbeat is fresh, or won the race.
        NotFound: no such run.
    """
    run = store.get_run(run_id)
    owner = run.owner
    if owner == str(me):
        return Takeover(run, None)
    if owner is not None:
        other = RunnerId.parse(owner)
        fresh = run.heartbeat_at is not None and now - run.heartbeat_at < stale_after
        dead = other is not None and provably_dead(other, me.host)
        if fresh and not dead:
            age = (now - run.heartbeat_at).total_seconds() if run.heartbeat_at else 0.0
            raise RunBusy(
                f"run {run_id} is being driven by {owner} (heartbeat {age:.0f}s ago); "
                "wait for it to end, or stop that process"
            )
    if not _take(store, run, str(me), now):
        raise RunBusy(f"another runner took run {run_id} first")
    return Takeover(store.get_run(run_id), owner)


def _take(store: Store, run: RunRecord, me: str, now: datetime) -> bool:
    """Become the owner of *run* if nothing changed since it was read: for an unfinished run
    taken from another owner, not even its heartbeat (the owner was alive after all)."""
    if run.owner is not None and run.state in UNFINISHED:
        return store.claim_run(Claim(run.run_id, run.owner, run.heartbeat_at), me, now)
    return store.acquire(run.run_id, me, expect=run.owner, at=now)
