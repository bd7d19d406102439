"""The loop of one warm worker process of the local pool.

It receives attempts over a pipe, runs them one at a time and sends back a "started" and a
"done" message for each. It keeps unpickled operators and recent outputs in memory between
attempts, and exits at once when the engine that started it goes away (its lifeline pipe closes).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from rota.artifacts.local import OutputCache
from rota.errors import ExecutorError
from rota.executors.attempt import crashed_outcome, run_attempt
from rota.executors.base import AttemptOutcome, AttemptSpec
from rota.executors.logs import FdCapture
from rota.flowfile import import_flow_file
from rota.operators.liveends import end_live

Message = tuple[int, tuple[tuple[str, str], ...], Any, bytes | None, bytes]
"""(attempt id, modules to import, operator key, pickled operator or None if sent before to this
worker, pickled spec without its operator)."""


def _watch_lifeline(lifeline: Connection, capture: FdCapture) -> None:
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv()
    # The engine is gone: end this worker and its process group's children now, so no orphan
    # finishes a task behind the back of whoever resumes the run; what the attempt printed so
    # far stays in its log (masked as it was written); a container it started is removed.
    capture.abandon()
    end_live()
    with contextlib.suppress(OSError):
        os.killpg(0, signal.SIGKILL)
    os._exit(70)


def _on_sigterm(capture: FdCapture, signum: int, frame: object) -> None:
    """Killed for a timeout (the engine ends the worker's group): keep what the attempt
    printed, then die of the signal as the engine expects."""
    del frame
    capture.abandon()
    end_live()  # e.g. remove the attempt's container, which is outside this process group
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def worker_main(
    conn: Connection,
    lifeline: Connection,
    cache_bytes: int,
    inherited: Sequence[int] = (),
) -> None:
    """Serve attempts from *conn* until it closes; first close the *inherited* engine-side fds."""
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    # Its own process group: the engine ends a timed-out attempt by ending this group (the worker
    # and whatever the task started), and a terminal's Ctrl-C reaches the engine only.
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Print through fds 1 and 2 whatever the forking process had put in place of sys.stdout, so
    # that FdCapture sees everything a task prints.
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    capture = FdCapture()
    # not the engine's handler, inherited by fork
    signal.signal(signal.SIGTERM, functools.partial(_on_sigterm, capture))
    threading.Thread(target=_watch_lifeline, args=(lifeline, capture), daemon=True).start()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    ops = _Operators()
    cache = OutputCache(cache_bytes)
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        # The engine made this message with plain pickle of plain values: if even that fails,
        # the attempt cannot be named, and dying (the engine reports WorkerLost) beats a hang.
        message: Message = pickle.loads(data)
        conn.send(_serve(conn, message, ops, cache, capture, worker))


def _serve(
    conn: Connection,
    message: Message,
    ops: _Operators,
    cache: OutputCache,
    capture: FdCapture,
    worker: str,
) -> AttemptOutcome:
    """Run the attempt *message* carries and return its outcome, whatever fails: an exception
    escaping here would end the worker and turn the real error into a misleading WorkerLost."""
    attempt_id, modules, op_key, op_blob, spec_blob = message
    try:
        for _name, path in modules:
            import_flow_file(Path(path))
        op = ops.get(op_key, op_blob)
        spec: AttemptSpec = replace(pickle.loads(spec_blob), op=op)
    except Exception as err:
        return crashed_outcome(attempt_id, worker, err)
    started = time.time()
    conn.send(("started", spec.attempt_id, started, worker))
    try:
        return run_attempt(spec, cache, capture, worker, own_session=False)
    except BaseException as err:  # SIGINT is ignored here, so a KeyboardInterrupt is the task's
        return crashed_outcome(attempt_id, worker, err, started=started)


class _Operators:
    """The operators this worker received, each unpickled once. One that could not be unpickled
    fails every attempt that needs it (the engine sends each operator to a worker only once)."""

    def __init__(self) -> None:
        self._ops: dict[Any, Any] = {}
        self._broken: dict[Any, str] = {}

    def get(self, key: Any, blob: bytes | None) -> Any:
        """The operator *key*, unpickled from *blob* when that is given (its first attempt here).

        Raises:
            ExecutorError: the operator could not be unpickled for an earlier attempt.
        """
        if blob is not None:
            try:
                self._ops[key] = pickle.loads(blob)
            except Exception as err:
                self._broken[key] = f"{type(err).__name__}: {err}"
                raise
            self._broken.pop(key, None)
        if key in self._broken:
            raise ExecutorError(
                f"the task's operator could not be loaded in this worker: {self._broken[key]}"
            )
        return self._ops[key]
