"""The loop of one warm worker process of the local pool.

A reader thread takes the engine's messages off the pipe as they come: batches of attempts,
which it queues in an :class:`Inbox`, and requests to give back queued attempts another worker
should run, which it answers at once (even while an attempt runs). The main thread runs the
queued attempts one at a time, in the order they came, and streams back a "started" and an
outcome for each without waiting for the engine; an outcome and the start of the next attempt
travel in one message. The worker keeps unpickled operators and recent outputs in memory
between attempts, and exits at once when the engine that started it goes away (its lifeline
pipe closes).
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
from collections import deque
from collections.abc import Iterable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from rota.artifacts.local import OutputCache
from rota.errors import ExecutorError
from rota.executors.attempt import crashed_outcome, run_attempt
from rota.executors.base import AttemptOutcome, AttemptSpec, spec_from_values
from rota.executors.logs import FdCapture
from rota.flowfile import import_flow_file
from rota.operators.liveends import end_live

Message = tuple[int, tuple[tuple[str, str], ...], Any, bytes | None, bytes]
"""(attempt id, modules to import, operator key, pickled operator or None if sent before to this
worker, pickled spec without its operator)."""

RUN = "run"
"""The engine sends ``(RUN, [Message, ...])``: attempts to queue, in order."""
REVOKE = "revoke"
"""The engine sends ``(REVOKE, [attempt id, ...])``: give back those not begun yet."""
STARTED = "started"
"""The worker sends ``(STARTED, attempt id, epoch seconds, worker name, monotonic seconds)``;
the monotonic time is the machine's clock the engine's timeouts count on."""
REVOKED = "revoked"
"""The worker answers a REVOKE with ``(REVOKED, [attempt id, ...])``: those it will not run."""


class Inbox:
    """The attempts a worker received and has not begun, in order; shared by its two threads."""

    def __init__(self) -> None:
        self._queue: deque[Message] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, messages: Iterable[Message]) -> None:
        with self._cond:
            self._queue.extend(messages)
            self._cond.notify()

    def close(self) -> None:
        """The engine is gone: nothing queued will run."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify()

    def revoke(self, attempt_ids: Sequence[int]) -> list[int]:
        """Drop the attempts of *attempt_ids* still queued; return those dropped."""
        wanted = set(attempt_ids)
        with self._cond:
            dropped = [m[0] for m in self._queue if m[0] in wanted]
            kept = [m for m in self._queue if m[0] not in wanted]
            self._queue.clear()
            self._queue.extend(kept)
        return dropped

    def take(self, *, wait: bool) -> Message | None:
        """The next attempt (it leaves the queue: it will run here); with *wait*, block until
        one comes. None when there is none, or the inbox was closed."""
        with self._cond:
            while wait and not self._queue and not self._closed:
                self._cond.wait()
            return self._queue.popleft() if self._queue else None


class Outbox:
    """Sends lists of events to the engine; both threads send, one message at a time."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send(self, events: list[Any]) -> None:
        with self._lock:
            self._conn.send(events)

    def send_quietly(self, events: list[Any]) -> None:
        """Send *events*; if the engine is gone, the worker learns it from its pipes anyway."""
        with contextlib.suppress(OSError):
            self.send(events)


def _read(conn: Connection, inbox: Inbox, outbox: Outbox) -> None:
    """The reader thread: queue the batches, answer the revokes, until the pipe closes."""
    try:
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                return
            # The engine made this message with plain pickle of plain values: if even that
            # fails, nothing queued can be trusted; the worker ends and the engine reports what
            # it held.
            kind, body = pickle.loads(data)
            if kind == REVOKE:  # answered by another thread: this one never waits to send, so
                # the engine, however full the pipe back to it, can always send the next batch
                reply = [(REVOKED, inbox.revoke(body))]
                threading.Thread(target=outbox.send_quietly, args=(reply,), daemon=True).start()
            else:
                inbox.put(body)
    finally:
        inbox.close()


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
    inbox, outbox = Inbox(), Outbox(conn)
    threading.Thread(target=_read, args=(conn, inbox, outbox), daemon=True).start()
    with contextlib.suppress(OSError):  # the engine went away while we sent
        _serve_all(inbox, outbox, _Runner(capture, cache_bytes))


def _serve_all(inbox: Inbox, outbox: Outbox, runner: _Runner) -> None:
    """Run what comes in, in order, until the inbox closes. What is ready to tell the engine
    goes in one message, sent as soon as an attempt begins or nothing is left to begin."""
    events: list[Any] = []
    while True:
        message = inbox.take(wait=False)
        if message is None:
            if events:
                outbox.send(events)
                events = []
            message = inbox.take(wait=True)
            if message is None:
                return
        loaded = runner.load(message)
        if isinstance(loaded, AttemptOutcome):  # its spec or operator could not be loaded
            events.append(loaded)
            continue
        started, began = time.time(), time.monotonic()
        events.append((STARTED, loaded.attempt_id, started, runner.name, began))
        outbox.send(events)
        events = [runner.run(loaded, started)]


class _Runner:
    """Loads and runs attempts in this worker, whatever fails: an exception escaping here would
    end the worker and turn the real error into a misleading WorkerLost."""

    def __init__(self, capture: FdCapture, cache_bytes: int) -> None:
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._capture = capture
        self._ops = _Operators()
        self._cache = OutputCache(cache_bytes)

    def load(self, message: Message) -> AttemptSpec | AttemptOutcome:
        """The spec *message* carries, with its operator; or the failed outcome saying why not."""
        attempt_id, modules, op_key, op_blob, spec_blob = message
        try:
            for _name, path in modules:
                import_flow_file(Path(path))
            op = self._ops.get(op_key, op_blob)
            spec = spec_from_values(pickle.loads(spec_blob), op)
        except Exception as err:
            return crashed_outcome(attempt_id, self.name, err)
        return spec

    def run(self, spec: AttemptSpec, started: float) -> AttemptOutcome:
        try:
            return run_attempt(spec, self._cache, self._capture, self.name, own_session=False)
        except BaseException as err:  # SIGINT is ignored here, so a KeyboardInterrupt is the task's
            return crashed_outcome(spec.attempt_id, self.name, err, started=started)


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
