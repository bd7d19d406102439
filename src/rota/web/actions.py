"""The UI's actions: the same engine functions and ``rota`` commands as the CLI.

Actions that need a flow's code (trigger builds the flow with its parameters, clear and stats read
its graph and retries) run the very ``rota`` command in a child process, with this server's
``ROTA_HOME`` and store: the server never imports user code (a flow file that hangs, crashes or
calls ``exit()`` at import cannot take it down), and there is no second implementation. Resume
starts a driver process (``rota _drive RUN_ID``), as the scheduler does. Cancel and pause need no
code and call :mod:`rota.engine.steer` in this process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rota.config import Settings
from rota.engine.launcher import DriverLauncher, Ended
from rota.errors import RotaError, UserError
from rota.model.safetext import safe_text

COMMAND_TIMEOUT: Final = 120.0
_QUEUED: Final = re.compile(r"^run (\S+) of flow ")


class ActionFailed(RotaError):
    """Raised when a ``rota`` command run for an action failed for another reason than its
    input (its message is the command's last line)."""


@dataclass(frozen=True, slots=True)
class Done:
    """What a ``rota`` child printed, when it exited 0."""

    stdout: str
    stderr: str


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@dataclass
class Actions:
    """Runs the UI's actions for one server (one home, one store).

    Args:
        settings: the server's settings; children get its home and store explicitly.
        flows_dir: the folder flow names are found in (``rota ui --flows``), if any.
    """

    settings: Settings
    flows_dir: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _launcher: DriverLauncher | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    ended: dict[str, int] = field(default_factory=dict, init=False)
    """Run id -> exit code of the drivers this server started that have ended."""

    def child_environ(self) -> dict[str, str]:
        """Our environment, with the home and the store made explicit."""
        env = dict(self.environ)
        env["ROTA_HOME"] = str(self.settings.home)
        env["ROTA_DATABASE_URL"] = self.settings.database_url
        if self.flows_dir is not None:
            env["ROTA_FLOWS"] = str(self.flows_dir)
        return env

    def rota(self, args: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> Done:
        """Run ``rota ARGS`` in a child process; arguments are passed as a list, never a shell.

        Raises:
            UserError: the command refused its input (exit 2): its one-line message.
            ActionFailed: it failed otherwise, or did not end within *timeout* seconds.
        """
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "rota", *args],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                env=self.child_environ(),
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ActionFailed(f"rota {args[0]} did not end within {timeout:g} s") from None
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace")
        if proc.returncode == 2:
            raise UserError(_last_line(err).removeprefix("rota: error: ") or "refused")
        if proc.returncode != 0:
            raise ActionFailed(_last_line(err) or f"rota {args[0]} exited {proc.returncode}")
        return Done(out, err)

    def target(self, flow: str, path: str | None) -> str:
        """How a ``rota`` command names *flow*: by name in the flows folder, else by its file."""
        if self.flows_dir is not None or not path:
            return flow
        return f"{path}:{flow}"

    # --- actions that need the flow's code --------------------------------------------------

    def trigger(self, target: str, params: Mapping[str, str], logical_date: str | None) -> str:
        """Queue a run (``rota trigger``) and start its driver; returns the run id.

        Raises:
            UserError: the flow, a parameter or the date is refused (nothing is stored).
        """
        args = ["trigger", target]
        for key, value in params.items():
            args += ["-p", f"{key}={value}"]
        if logical_date:
            args += ["--logical-date", logical_date]
        done = self.rota(args)
        found = _QUEUED.match(done.stdout.strip())
        if found is None:
            raise ActionFailed(f"rota trigger said {safe_text(_last_line(done.stdout))!r}")
        run_id = found.group(1)
        self.drive(run_id)
        return run_id

    def clear(self, run_id: str, tasks: Sequence[str], *, downstream: bool, upstream: bool) -> str:
        """``rota clear``: reset tasks for a resume; returns what the command said."""
        args = ["clear", run_id]
        for tid in tasks:
            args += ["--task", tid]
        if downstream:
            args.append("--downstream")
        if upstream:
            args.append("--upstream")
        return self.rota(args).stdout.strip()

    def mark(
        self, run_id: str, tasks: Sequence[str], state: str, *, downstream: bool, upstream: bool
    ) -> str:
        """``rota mark``: set tasks to success or failed by hand; returns what the command said."""
        args = ["mark", run_id, "--state", state]
        for tid in tasks:
            args += ["--task", tid]
        if downstream:
            args.append("--downstream")
        if upstream:
            args.append("--upstream")
        return self.rota(args).stdout.strip()

    def stats(self, target: str, last: int, goal: float) -> dict[str, Any]:
        """``rota stats --json``: the flow's reliability, as the command computes it."""
        done = self.rota(["stats", target, "--json", "--last", str(last), "--target", str(goal)])
        value = json.loads(_last_line(done.stdout))
        if not isinstance(value, dict):
            raise ActionFailed("rota stats printed no JSON object")
        return value

    # --- drivers ----------------------------------------------------------------------------

    def drive(self, run_id: str) -> None:
        """Start a driver for *run_id* (``rota _drive``: a queued run from the start, another as
        a resume), unless one of ours drives it already."""
        with self._lock:
            if self._launcher is None:
                log_dir = self.settings.home / "logs" / "drivers"
                self._launcher = DriverLauncher(self.child_environ(), log_dir)
            self.ended.pop(run_id, None)
            self._launcher.launch(run_id)

    def reap(self) -> list[Ended]:
        """Drivers that ended since the last call (their codes are kept in ``ended``)."""
        with self._lock:
            if self._launcher is None:
                return []
            done = self._launcher.reap()
            for end in done:
                self.ended[end.run_id] = end.code
            return done

    def driving(self) -> set[str]:
        """Runs a driver of ours drives now."""
        with self._lock:
            return set() if self._launcher is None else self._launcher.active()

    def close(self) -> None:
        """Stop our drivers (their runs are interrupted, to be resumed)."""
        with self._lock:
            if self._launcher is not None:
                self._launcher.close()
