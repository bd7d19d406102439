"""The local executor: a pool of warm worker processes, one pipe each.

Workers are started once per run (not a new interpreter per task). They are forked from the
engine's process when it has a single thread, so they start at once with the flow module and its
imports already loaded; otherwise (forking a threaded process is unsafe) they come from a fork
server with Rota preloaded. The engine's process keeps, per worker, the attempts it holds and
the operators it has received, so each operator is pickled once and sent to each worker once.
An attempt goes preferably to the worker that produced its first input, which reads it from memory.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, cast

import cloudpickle

from rota.errors import ExecutorError
from rota.executors.base import (
    LOST_MRO,
    AttemptEvent,
    AttemptOutcome,
    AttemptSpec,
    AttemptStarted,
    ErrorInfo,
    spec_values,
    timeout_error,
)
from rota.executors.pace import Pace
from rota.executors.worker import REVOKE, RUN, STARTED, Message


def _context(start_method: str | None = None) -> Any:
    if start_method == "forkserver":  # a threaded host process (a Dask worker): no fork of it
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["rota.executors.worker"])
        return ctx
    # fork where the OS has it (multiprocessing's own default on Linux): workers start at once
    # with the flow's modules loaded, and functions defined anywhere (a test module, a notebook)
    # need no re-import. The child runs only the worker loop, which takes no lock another
    # thread of the engine could hold.
    if "fork" in mp.get_all_start_methods():
        return mp.get_context("fork")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["rota.executors.worker"])
    return ctx


@dataclass(eq=False)
class _Worker:
    proc: Any
    conn: Connection
    lifeline: Connection
    index: int
    outstanding: dict[int, None] = field(default_factory=dict)
    """The attempts it holds (queued and running), in the order they were sent."""
    started: set[int] = field(default_factory=set)
    """Those of them it reported started (at most one is running)."""
    began: float | None = None
    """When its running attempt started (the machine's monotonic clock); None when idle."""
    revoking: set[int] = field(default_factory=set)
    """Queued attempts it was asked to give back, until it answers."""
    outbox: list[int] = field(default_factory=list)
    """Attempts assigned to it and not sent yet: they go in one message at the next flush."""
    known_ops: set[int] = field(default_factory=set)

    def queued(self) -> list[int]:
        """The attempts it holds and has not begun, nor been asked to give back."""
        return [a for a in self.outstanding if a not in self.started and a not in self.revoking]


@dataclass(frozen=True, slots=True)
class _Prepared:
    """An attempt ready to send to any worker: what its message carries but the operator."""

    modules: tuple[tuple[str, str], ...]
    op_key: int
    spec_blob: bytes


@dataclass(slots=True)
class PoolTraffic:
    """Messages that crossed the pipes (for tests and diagnostics)."""

    sent: int = 0
    """Batches of attempts sent to workers."""
    received: int = 0
    """Messages read from workers (each carries one or more events)."""
    revokes: int = 0
    """Requests to give back queued attempts, so that an idle worker runs them."""


STEAL_AFTER_S = 0.01
"""An idle worker takes over queued attempts of a worker whose running attempt has run this
long (a worker busy with short tasks soon comes to its queue)."""


class LocalPoolExecutor:
    """Runs attempts in *workers* warm processes, several queued per worker when tasks are short.

    Each worker holds at most *prefetch* attempts (running and queued); without *prefetch*, as
    many as :class:`~rota.executors.pace.Pace` gives by the recent attempts' durations. The
    attempts submitted before a ``poll`` go to each worker in one message, and each worker streams
    back its events. An idle worker takes over the queued attempts of a worker busy with a long
    one. A worker that dies while running an attempt reports it lost (or timed out); the attempts
    queued behind it go to a fresh worker unseen by the engine, since none of them began.

    Each attempt writes its log where its spec says, while it runs; *logs_dir* (the folder those
    logs are in) is not needed for that any more, and is accepted so callers need not change.
    """

    name = "local"

    def __init__(
        self,
        workers: int,
        logs_dir: str,
        *,
        prefetch: int | None = None,
        cache_bytes: int = 256 * 1024 * 1024,
        kill_grace: float = 2.0,
        start_method: str | None = None,
    ) -> None:
        del logs_dir
        self._pace = Pace(depth=prefetch)
        self._cache_bytes = cache_bytes
        self._blobs: dict[int, bytes] = {}
        self._op_ids: dict[Any, int] = {}
        self._keep: list[Any] = []  # operators keyed by id() stay alive so ids are not reused
        self._holder: dict[str, _Worker] = {}
        self._prepared: dict[int, _Prepared] = {}
        self._timeouts: dict[int, float] = {}
        self._logs: dict[int, str] = {}  # attempt -> its log, named in a lost attempt's outcome
        self._grace = kill_grace
        self._watch = _Deadlines(kill_grace)
        self._ctx = _context(start_method)
        self.traffic = PoolTraffic()
        self._workers: list[_Worker] = []
        for i in range(max(1, workers)):
            self._workers.append(self._spawn(i))
        self._by_conn = {w.conn: w for w in self._workers}

    def _spawn(self, index: int) -> _Worker:
        from rota.executors.worker import worker_main

        ours, theirs = self._ctx.Pipe(duplex=True)
        life_r, life_w = self._ctx.Pipe(duplex=False)
        # A forked child inherits every descriptor: it must close the engine's ends of its own and
        # the other workers' pipes, or they would never see end-of-file when the engine goes away.
        inherited: list[int] = []
        if self._ctx.get_start_method() == "fork":
            engine_ends = [ours, life_w] + [c for w in self._workers for c in (w.conn, w.lifeline)]
            inherited = [c.fileno() for c in engine_ends if not c.closed]
        proc = self._ctx.Process(
            target=worker_main,
            args=(theirs, life_r, self._cache_bytes, inherited),
            name=f"rota-worker-{index}",
            daemon=True,
        )
        try:
            proc.start()
        except OSError as err:
            raise ExecutorError(f"cannot start worker process: {err}") from err
        theirs.close()
        life_r.close()
        return _Worker(proc, ours, life_w, index)

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers (for tests and diagnostics)."""
        return [w.proc.pid for w in self._workers]

    def capacity(self) -> int:
        depth = self._pace.depth()
        return sum(max(0, depth - len(w.outstanding)) for w in self._workers)

    def submit(self, attempt: AttemptSpec) -> None:
        """Queue *attempt* for the worker it suits; it is sent at the next ``poll``, with the
        others submitted before it."""
        key = self._op_key(attempt.op)
        self._blob(key, attempt.op)  # pickled once, here, so an operator that cannot be fails now
        bare = spec_values(attempt)
        try:
            spec_blob = pickle.dumps(bare, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # arguments only cloudpickle can carry (lambdas, local classes)
            spec_blob = cloudpickle.dumps(bare, protocol=pickle.HIGHEST_PROTOCOL)
        self._prepared[attempt.attempt_id] = _Prepared(attempt.modules, key, spec_blob)
        self._logs[attempt.attempt_id] = attempt.log_path
        if attempt.timeout:
            self._timeouts[attempt.attempt_id] = attempt.timeout
        self._assign(attempt.attempt_id, self._choose(attempt))

    def _choose(self, attempt: AttemptSpec) -> _Worker:
        depth = self._pace.depth()
        for ref in attempt.inputs:
            holder = self._holder.get(ref.ref.uri) if ref.ref else None
            if holder is not None and len(holder.outstanding) < depth:
                return holder
        return self._least_loaded()

    def _least_loaded(self) -> _Worker:
        return min(self._workers, key=lambda w: len(w.outstanding))

    @staticmethod
    def _assign(attempt_id: int, worker: _Worker) -> None:
        worker.outstanding[attempt_id] = None
        worker.outbox.append(attempt_id)

    def _op_key(self, op: Any) -> int:
        """A small int naming *op*: equal operators share one, so they are pickled once."""
        try:
            key: Any = ("op", op)
            hash(key)
        except TypeError:
            self._keep.append(op)
            key = ("id", id(op))
        found = self._op_ids.get(key)
        if found is None:
            found = self._op_ids[key] = len(self._op_ids)
        return found

    def _blob(self, key: int, op: Any) -> bytes:
        blob = self._blobs.get(key)
        if blob is None:
            blob = cloudpickle.dumps(op, protocol=pickle.HIGHEST_PROTOCOL)
            self._blobs[key] = blob
        return blob

    def _flush(self) -> None:
        """Send each worker the attempts assigned to it since the last flush, in one message."""
        for worker in self._workers:
            if worker.outbox:
                batch = [self._message(worker, a) for a in worker.outbox]
                worker.outbox = []
                self.traffic.sent += 1
                data = pickle.dumps((RUN, batch), protocol=pickle.HIGHEST_PROTOCOL)
                with contextlib.suppress(OSError):  # it died: poll hears its end-of-file
                    worker.conn.send_bytes(data)

    def _message(self, worker: _Worker, attempt_id: int) -> Message:
        prepared = self._prepared[attempt_id]
        key = prepared.op_key
        blob = None
        if key not in worker.known_ops:  # each operator goes to each worker once
            blob = self._blobs[key]
            worker.known_ops.add(key)
        return (attempt_id, prepared.modules, key, blob, prepared.spec_blob)

    def poll(self, timeout: float) -> list[AttemptEvent]:
        self._flush()
        busy = [w.conn for w in self._workers if w.outstanding]
        if not busy:  # nothing can report: wait as asked (a caller waiting for a due time)
            time.sleep(max(0.0, timeout))
            return []
        events: list[AttemptEvent] = []
        now = time.monotonic()
        timeout = min(timeout, self._watch.next_due(now), self._steal_due(now))
        for ready in wait(busy, max(0.0, timeout)):
            conn = cast(Connection, ready)
            worker = self._by_conn[conn]
            try:
                while conn.poll():
                    batch = conn.recv()
                    self.traffic.received += 1
                    for item in batch:
                        events.extend(self._receive(worker, item))
            except (EOFError, OSError):
                events.extend(self._replace_dead(worker))
        self._steal(time.monotonic())
        self._flush()
        self._watch.enforce(time.monotonic())
        return events

    def _receive(self, worker: _Worker, msg: Any) -> list[AttemptEvent]:
        if isinstance(msg, AttemptOutcome):
            return [self._ended(worker, msg)]
        if msg[0] == STARTED:
            _tag, attempt_id, at, name, began = msg
            worker.started.add(attempt_id)
            worker.began = began
            limit = self._timeouts.pop(attempt_id, None)
            if limit is not None:  # it counts from the attempt's own start, not its queueing
                self._watch.start(attempt_id, worker.proc.pid, limit, began)
            return [AttemptStarted(attempt_id, at, name)]
        self._given_back(worker, msg[1])
        return []

    def _ended(self, worker: _Worker, out: AttemptOutcome) -> AttemptOutcome:
        attempt_id = out.attempt_id
        worker.outstanding.pop(attempt_id, None)
        worker.revoking.discard(attempt_id)
        if attempt_id in worker.started:
            worker.started.discard(attempt_id)
            worker.began = None
            self._pace.record(out.finished_at - out.started_at)
        self._watch.forget(attempt_id)
        self._timeouts.pop(attempt_id, None)  # an attempt that failed before it started
        self._logs.pop(attempt_id, None)
        self._prepared.pop(attempt_id, None)
        if out.output_path:
            self._holder[out.output_path] = worker
        return out

    def _given_back(self, worker: _Worker, attempt_ids: list[int]) -> None:
        """*worker* gave back *attempt_ids* (queued there, never begun): another runs them. The
        others it was asked for had begun (their events come or came from it)."""
        worker.revoking.clear()
        for attempt_id in attempt_ids:
            worker.outstanding.pop(attempt_id, None)
            self._assign(attempt_id, self._least_loaded())

    def _steal_due(self, now: float) -> float:
        """Seconds until an idle worker may take over queued attempts, or infinity."""
        donor = self._donor()
        if donor is None or donor.began is None:
            return float("inf")
        return donor.began + STEAL_AFTER_S - now

    def _donor(self) -> _Worker | None:
        """The worker with the most queued attempts, while another has none at all."""
        if all(w.outstanding for w in self._workers):
            return None
        donor = max(self._workers, key=lambda w: len(w.queued()))
        return donor if donor.queued() and not donor.revoking else None

    def _steal(self, now: float) -> None:
        """Ask a worker busy with a long attempt to give back half its queue, rounded up."""
        donor = self._donor()
        if donor is None or donor.began is None or now < donor.began + STEAL_AFTER_S:
            return
        queued = donor.queued()
        asked = queued[len(queued) // 2 :]
        donor.revoking.update(asked)
        self.traffic.revokes += 1
        data = pickle.dumps((REVOKE, asked), protocol=pickle.HIGHEST_PROTOCOL)
        with contextlib.suppress(OSError):  # it died: poll hears its end-of-file
            donor.conn.send_bytes(data)

    def _replace_dead(self, worker: _Worker) -> list[AttemptEvent]:
        # Nothing a task started may outlive its worker: end what is left of its process group
        # (e.g. a child that ignored the SIGTERM of a timeout).
        _signal_group(worker.proc.pid, signal.SIGKILL)
        worker.proc.join(timeout=1)
        unsent = set(worker.outbox)
        running = [a for a in worker.outstanding if a in worker.started]
        queued = [a for a in worker.outstanding if a not in worker.started and a not in unsent]
        # It died running an attempt: that one is lost (or timed out); those queued behind it
        # never began and go to a fresh worker. It died with none begun: what it held may be what
        # killed it, so each is reported lost (the engine's retry policy decides), as one would be.
        # What it was never sent goes to a fresh worker in any case.
        lost = self._lost(worker, running or queued)
        again = [a for a in worker.outstanding if a in unsent or (running and a in queued)]
        self._close_worker(worker)
        fresh = self._spawn(worker.index)
        self._workers[worker.index] = fresh
        del self._by_conn[worker.conn]
        self._by_conn[fresh.conn] = fresh
        self._holder = {p: w for p, w in self._holder.items() if w is not worker}
        for attempt_id in again:
            self._assign(attempt_id, self._least_loaded())
        return list(lost)

    def _lost(self, worker: _Worker, attempt_ids: list[int]) -> list[AttemptOutcome]:
        """The outcomes of *attempt_ids*, held by *worker* when it died."""
        code = worker.proc.exitcode
        now = time.time()
        lost_error = ErrorInfo(
            "WorkerLost", f"worker process died (exit code {code})", exit_code=code, mro=LOST_MRO
        )
        lost = []
        for attempt_id in attempt_ids:
            limit = self._watch.forget(attempt_id)
            error = timeout_error(limit) if limit is not None else lost_error
            self._timeouts.pop(attempt_id, None)
            self._prepared.pop(attempt_id, None)
            log = _kept_log(self._logs.pop(attempt_id, None))
            name = f"worker-{worker.index}"
            lost.append(
                AttemptOutcome(attempt_id, False, now, now, name, log_path=log, error=error)
            )
        return lost

    @staticmethod
    def _close_worker(worker: _Worker) -> None:
        for conn in (worker.conn, worker.lifeline):
            with contextlib.suppress(OSError):
                conn.close()

    def close(self, *, cancel: bool = False) -> None:
        # With *cancel*, a busy worker is ended as at a timeout (_end_busy). Then a worker sees
        # EOF and returns; a busy one sees its lifeline close, keeps what its attempt printed and
        # ends its process group (the worker and whatever its task started). With *cancel*, one
        # that has not done so within half a second is killed.
        if cancel:
            self._end_busy()
        for w in self._workers:
            self._close_worker(w)
        deadline = time.monotonic() + (0.5 if cancel else 5.0)
        for w in self._workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                with contextlib.suppress(OSError):
                    os.killpg(w.proc.pid, signal.SIGKILL)
                w.proc.join(timeout=5)

    def _end_busy(self) -> None:
        """End each worker running an attempt as a timeout does: SIGTERM to its process group,
        so the attempt removes what it started outside it (a container, a pod) and the worker
        dies; SIGKILL to what is left of the group after the grace."""
        busy = [w for w in self._workers if w.outstanding]
        for w in busy:
            _signal_group(w.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._grace
        for w in busy:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            _signal_group(w.proc.pid, signal.SIGKILL)


class _Deadlines:
    """Timeouts of running attempts: SIGTERM to the worker's group at the deadline, SIGKILL after
    a grace period. The worker's death then reports the attempt as timed out."""

    def __init__(self, grace: float) -> None:
        self._grace = grace
        self._due: dict[int, tuple[int, float, float]] = {}  # attempt -> (pgid, deadline, limit)
        self._kill_at: dict[int, float] = {}  # pgid -> when to SIGKILL

    def start(self, attempt_id: int, pgid: int, limit: float, now: float) -> None:
        self._due[attempt_id] = (pgid, now + limit, limit)

    def forget(self, attempt_id: int) -> float | None:
        """Stop watching *attempt_id*; return its limit if it was ended for running past it."""
        entry = self._due.pop(attempt_id, None)
        if entry is None:
            return None
        pgid, _, limit = entry
        ended = self._kill_at.pop(pgid, None) is not None
        return limit if ended else None

    def next_due(self, now: float) -> float:
        """Seconds until the next deadline or kill, or infinity."""
        times = [d for _, d, _ in self._due.values()] + list(self._kill_at.values())
        return min(times, default=now + 3600.0) - now

    def enforce(self, now: float) -> None:
        for pgid, deadline, _ in self._due.values():
            if now >= deadline and pgid not in self._kill_at:
                _signal_group(pgid, signal.SIGTERM)
                self._kill_at[pgid] = now + self._grace
        for pgid, kill_at in self._kill_at.items():
            if now >= kill_at:
                _signal_group(pgid, signal.SIGKILL)


def _kept_log(path: str | None) -> str | None:
    """*path*, if the attempt of a lost worker printed something there before it died."""
    try:
        return path if path is not None and Path(path).stat().st_size > 0 else None
    except OSError:
        return None


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, sig)
