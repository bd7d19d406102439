"""Starting one driver process per run (``rota _drive RUN_ID``) and watching them end.

Each driver gets a lifeline: its stdin is a pipe from us. When we exit, however we exit (SIGKILL
included), the pipe closes and the driver stops its run the way Ctrl-C does: attempts in flight
are marked interrupted and the run can be resumed by the next driver. So no run is left driven by
an orphan, and a restarted scheduler or backfill resumes what was cut short.

A scheduler claims a run in the store before it launches its driver and names its claim on the
driver's command line (``--claimed-by``): the driver takes the run over from that claim only, so
a claim another scheduler took over meanwhile makes the driver exit busy instead of racing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from rota.home import open_private

EXIT_BUSY: Final = 3
"""A driver's exit code when another live runner drives its run already."""
EXIT_LEASE_LOST: Final = 4
"""A driver's exit code when it lost its run's lease (taken over, or not renewed in time): its
attempts were stopped; the run is resumed by whoever holds it or takes it next."""
EXIT_STORE_DOWN: Final = 75
"""A driver's exit code when the store was out of reach (EX_TEMPFAIL); the run is driven again
once it is back."""
BENIGN_EXITS: Final = frozenset({0, 1, EXIT_BUSY, EXIT_LEASE_LOST, EXIT_STORE_DOWN, 130})
"""Exit codes that say how a run ended or why it was left to others: not a broken driver."""


@dataclass(frozen=True, slots=True)
class Ended:
    """Driver of *run_id* exited with *code* (0 success, 1 run failed, 3 busy, other: error)."""

    run_id: str
    code: int


class DriverLauncher:
    """Starts ``rota _drive`` processes and reports when they end.

    Args:
        environ: the drivers' environment (ROTA_HOME, ROTA_DATABASE_URL, ... are read from it).
        log_dir: each driver's stdout and stderr go to ``log_dir/RUN_ID.driver.log``.
    """

    def __init__(self, environ: Mapping[str, str], log_dir: Path) -> None:
        self.environ = dict(environ)
        self.log_dir = log_dir
        self._procs: dict[str, tuple[subprocess.Popen[bytes], TextIO]] = {}

    def launch(self, run_id: str, claim: str | None = None) -> None:
        """Start a driver for *run_id* (no-op if one of ours drives it already); with *claim*,
        the driver takes the run over from that owner only."""
        if run_id in self._procs:
            return
        log = open(open_private(self.log_dir / f"{run_id}.driver.log", append=True), "a")  # noqa: SIM115
        args = [sys.executable, "-m", "rota", "_drive", run_id, "--lifeline"]
        if claim is not None:
            args.append(f"--claimed-by={claim}")
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.environ,
            start_new_session=True,  # a Ctrl-C meant for us reaches drivers only through the pipe
        )
        self._procs[run_id] = (proc, log)

    def active(self) -> set[str]:
        """Run ids whose driver is still running."""
        return set(self._procs)

    def reap(self) -> list[Ended]:
        """Drivers that exited since the last call."""
        ended: list[Ended] = []
        for run_id, (proc, log) in list(self._procs.items()):
            code = proc.poll()
            if code is not None:
                log.close()
                self._close_pipe(proc)
                del self._procs[run_id]
                ended.append(Ended(run_id, code))
        return ended

    def wait_any(self, timeout: float) -> list[Ended]:
        """Wait up to *timeout* seconds for at least one driver to end."""
        deadline = time.monotonic() + timeout
        while True:
            ended = self.reap()
            if ended or not self._procs or time.monotonic() >= deadline:
                return ended
            time.sleep(0.05)

    def close(self, *, grace: float = 10.0) -> None:
        """Stop every driver: close their lifelines (they interrupt their runs), then kill what is
        left after *grace* seconds."""
        for proc, _ in self._procs.values():
            self._close_pipe(proc)
        deadline = time.monotonic() + grace
        while self._procs and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.05)
        for proc, log in self._procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log.close()
        self._procs.clear()

    @staticmethod
    def _close_pipe(proc: subprocess.Popen[bytes]) -> None:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()


def watch_lifeline() -> None:
    """In a driver: interrupt this process (as SIGTERM does) when stdin reaches end of file."""
    import threading

    fd = os.dup(0)  # a raw descriptor: sys.stdin's lock must stay free for forked workers
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 4096):
                pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="rota-lifeline", daemon=True).start()
