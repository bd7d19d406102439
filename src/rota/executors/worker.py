"""The loop of one warm worker process of the local pool.

It receives attempts over a pipe, runs them one at a time and sends back a "started" and a
"done" message for each. It keeps unpickled operators and recent outputs in memory between
attempts, and exits at once when the engine that started it goes away (its lifeline pipe closes).
"""

from __future__ import annotations

import contextlib
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
from rota.executors.attempt import describe_error, run_attempt
from rota.executors.base import AttemptOutcome, AttemptSpec
from rota.executors.logs import FdCapture
from rota.flowfile import import_flow_file

Message = tuple[int, tuple[tuple[str, str], ...], Any, bytes | None, bytes]
"""(attempt id, modules to import, operator key, pickled operator or None if sent before to this
worker, pickled spec without its operator)."""


def _watch_lifeline(lifeline: Connection) -> None:
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv()
    # The engine is gone: end this worker and its process group's children now, so no orphan
    # finishes a task behind the back of whoever resumes the run.
    with contextlib.suppress(OSError):
        os.killpg(0, signal.SIGKILL)
    os._exit(70)


def worker_main(
    conn: Connection,
    lifeline: Connection,
    logs_dir: str,
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
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the engine's handler, inherited by fork
    # Print through fds 1 and 2 whatever the forking process had put in place of sys.stdout, so
    # that FdCapture sees everything a task prints.
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    threading.Thread(target=_watch_lifeline, args=(lifeline,), daemon=True).start()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    ops: dict[Any, Any] = {}
    cache = OutputCache(cache_bytes)
    capture = FdCapture(Path(logs_dir))
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        attempt_id, modules, op_key, op_blob, spec_blob = pickle.loads(data)
        try:
            for _name, path in modules:
                import_flow_file(Path(path))
            if op_blob is not None:
                ops[op_key] = pickle.loads(op_blob)
            spec: AttemptSpec = pickle.loads(spec_blob)
        except Exception as err:
            now = time.time()
            conn.send(
                AttemptOutcome(attempt_id, False, now, now, worker, error=describe_error(err))
            )
            continue
        spec = replace(spec, op=ops[op_key])
        conn.send(("started", spec.attempt_id, time.time(), worker))
        outcome = run_attempt(spec, cache, capture.begin, capture, worker, own_session=False)
        conn.send(outcome)
