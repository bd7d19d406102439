"""Shared helpers of the resilience tests: the ``rota`` CLI in a subprocess, the process table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rota.store.base import AttemptRecord, Store
from rota.store.sql import open_store

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    """What one ``rota`` invocation did."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """The last stdout line, parsed."""
        return json.loads(self.out.strip().splitlines()[-1])


def cli_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``rota`` subprocess: ROTA_HOME=*home*, the default SQLite store."""
    env = {**os.environ, "ROTA_HOME": str(home), "ROTA_WORKERS": "2", **(extra or {})}
    env.pop("ROTA_DATABASE_URL", None)
    env.pop("ROTA_FAULT_POINTS", None)
    return env


def rota_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "rota", *args]


def run_cli(
    home: Path, cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> Result:
    """Run ``python -m rota ARGS`` to the end."""
    proc = subprocess.run(
        rota_cmd(*args),
        capture_output=True,
        text=True,
        env=cli_env(home, env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@contextmanager
def store_at(home: Path) -> Iterator[Store]:
    """The SQLite store a ``rota`` subprocess with ROTA_HOME=*home* uses."""
    store = open_store(f"sqlite:///{home / 'rota.db'}")
    try:
        yield store
    finally:
        store.close()


def attempts_of(home: Path, run_id: str, task_id: str | None = None) -> list[AttemptRecord]:
    """Every attempt row of *run_id* (of *task_id* only, if given), in try order."""
    with store_at(home) as store:
        rows = store.attempts(run_id)
    if task_id is not None:
        rows = [r for r in rows if r.task_id == task_id]
    return sorted(rows, key=lambda r: (r.task_id, r.map_index, r.try_number))


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout: float = 60.0,
    every: float = 0.05,
    proc: subprocess.Popen[str] | None = None,
) -> Any:
    """Poll *check* until it returns something truthy; fail after *timeout* seconds, or as soon
    as *proc* (the process expected to make it happen) has ended."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except Exception:  # the store may not exist yet, or be locked for a moment
            found = None
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"{' '.join(map(str, proc.args))} ended (exit {proc.returncode}) before {what}:\n"
                f"{out}{err}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def reap(proc: subprocess.Popen[str]) -> None:
    """Make sure *proc* is gone and its pipes are closed (after a failed test too)."""
    if proc.poll() is None:
        proc.kill()
    with suppress(Exception):
        proc.communicate(timeout=30)


# --- the process table -------------------------------------------------------------------------


def proc_state(pid: int) -> str | None:
    """The state letter of process *pid* (R, S, D, Z, ...), or None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    """Whether *pid* is a live process; a zombie (dead, never reaped) counts as dead."""
    state = proc_state(pid)
    return state is not None and state not in ("Z", "X")


def live_pids_with(marker: str) -> list[int]:
    """Live processes whose command line contains *marker*."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(entry.name)
        if marker in cmdline and pid != os.getpid() and alive(pid):
            found.append(pid)
    return found


def kill_leftovers(pids: list[int]) -> None:
    """Clean up after a failed test: SIGKILL processes it left behind."""
    import signal

    for pid in pids:
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)
