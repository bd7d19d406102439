"""One runner per run: a lease in the store, held by a heartbeat, taken over from the dead.

A runner names itself ``host:pid:start`` (``start`` is the process's start time as the kernel
counts it, so a recycled pid does not look alive). A run owned by another live runner is refused;
one whose owner is provably dead (same host, process gone) is taken over at once; one whose
owner's heartbeat is older than ``stale_after`` is taken over too (the owner may be on another
host).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from rota.errors import UserError
from rota.store.base import RunRecord, Store


class RunBusy(UserError):
    """Raised when a run is being driven by another live runner."""


@dataclass(frozen=True, slots=True)
class RunnerId:
    """Who drives a run: host, process id, and the process's start time."""

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
    def current(cls) -> RunnerId:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _start_time(pid) or "?")


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


def provably_dead(owner: RunnerId) -> bool:
    """True when *owner* ran on this host and its process is gone (or the pid was reused)."""
    if owner.host != socket.gethostname():
        return False
    return _start_time(owner.pid) != owner.start


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
        dead = other is not None and provably_dead(other)
        if fresh and not dead:
            age = (now - run.heartbeat_at).total_seconds() if run.heartbeat_at else 0.0
            raise RunBusy(
                f"run {run_id} is being driven by {owner} (heartbeat {age:.0f}s ago); "
                "wait for it to end, or stop that process"
            )
    if not store.acquire(run_id, str(me), expect=owner, at=now):
        raise RunBusy(f"another runner took run {run_id} first")
    return Takeover(store.get_run(run_id), owner)
