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
from dataclasses import dataclass, field, replace
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
    timeout_error,
)


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
    outstanding: set[int] = field(default_factory=set)
    known_ops: set[int] = field(default_factory=set)


class LocalPoolExecutor:
    """Runs attempts in *workers* warm processes, at most *prefetch* queued per worker.

    Each attempt writes its log where its spec says, while it runs; *logs_dir* (the folder those
    logs are in) is not needed for that any more, and is accepted so callers need not change.
    """

    name = "local"

    def __init__(
        self,
        workers: int,
        logs_dir: str,
        *,
        prefetch: int = 1,
        cache_bytes: int = 256 * 1024 * 1024,
        kill_grace: float = 2.0,
        start_method: str | None = None,
    ) -> None:
        del logs_dir
        self._prefetch = max(1, prefetch)
        self._cache_bytes = cache_bytes
        self._blobs: dict[int, bytes] = {}
        self._op_ids: dict[Any, int] = {}
        self._keep: list[Any] = []  # operators keyed by id() stay alive so ids are not reused
        self._holder: dict[str, _Worker] = {}
        self._timeouts: dict[int, float] = {}
        self._logs: dict[int, str] = {}  # attempt -> its log, named in a lost attempt's outcome
        self._grace = kill_grace
        self._watch = _Deadlines(kill_grace)
        self._ctx = _context(start_method)
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
        return sum(self._prefetch - len(w.outstanding) for w in self._workers)

    def submit(self, attempt: AttemptSpec) -> None:
        worker = self._choose(attempt)
        key = self._op_key(attempt.op)
        blob = None
        if key not in worker.known_ops:
            blob = self._blob(key, attempt.op)
            worker.known_ops.add(key)
        bare = replace(attempt, op=None)  # type: ignore[arg-type]
        try:
            spec_blob = pickle.dumps(bare, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # arguments only cloudpickle can carry (lambdas, local classes)
            spec_blob = cloudpickle.dumps(bare, protocol=pickle.HIGHEST_PROTOCOL)
        msg = (attempt.attempt_id, attempt.modules, key, blob, spec_blob)
        worker.outstanding.add(attempt.attempt_id)
        self._logs[attempt.attempt_id] = attempt.log_path
        if attempt.timeout:
            self._timeouts[attempt.attempt_id] = attempt.timeout
        worker.conn.send_bytes(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))

    def _choose(self, attempt: AttemptSpec) -> _Worker:
        for ref in attempt.inputs:
            holder = self._holder.get(ref.ref.uri) if ref.ref else None
            if holder is not None and len(holder.outstanding) < self._prefetch:
                return holder
        return min(self._workers, key=lambda w: len(w.outstanding))

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

    def poll(self, timeout: float) -> list[AttemptEvent]:
        busy = [w.conn for w in self._workers if w.outstanding]
        if not busy:  # nothing can report: wait as asked (a caller waiting for a due time)
            time.sleep(max(0.0, timeout))
            return []
        events: list[AttemptEvent] = []
        timeout = min(timeout, self._watch.next_due(time.monotonic()))
        for ready in wait(busy, max(0.0, timeout)):
            conn = cast(Connection, ready)
            worker = self._by_conn[conn]
            try:
                while conn.poll():
                    events.append(self._receive(worker, conn.recv()))
            except (EOFError, OSError):
                events.extend(self._replace_dead(worker))
        self._watch.enforce(time.monotonic())
        return events

    def _receive(self, worker: _Worker, msg: Any) -> AttemptEvent:
        if isinstance(msg, AttemptOutcome):
            worker.outstanding.discard(msg.attempt_id)
            self._watch.forget(msg.attempt_id)
            self._timeouts.pop(msg.attempt_id, None)  # an attempt that failed before it started
            self._logs.pop(msg.attempt_id, None)
            if msg.output_path:
                self._holder[msg.output_path] = worker
            return msg
        _tag, attempt_id, at, name = msg
        limit = self._timeouts.pop(attempt_id, None)
        if limit is not None:
            self._watch.start(attempt_id, worker.proc.pid, limit, time.monotonic())
        return AttemptStarted(attempt_id, at, name)

    def _replace_dead(self, worker: _Worker) -> list[AttemptEvent]:
        # Nothing a task started may outlive its worker: end what is left of its process group
        # (e.g. a child that ignored the SIGTERM of a timeout).
        _signal_group(worker.proc.pid, signal.SIGKILL)
        worker.proc.join(timeout=1)
        code = worker.proc.exitcode
        now = time.time()
        lost_error = ErrorInfo(
            "WorkerLost", f"worker process died (exit code {code})", exit_code=code, mro=LOST_MRO
        )
        lost = []
        for attempt_id in sorted(worker.outstanding):
            limit = self._watch.forget(attempt_id)
            error = timeout_error(limit) if limit is not None else lost_error
            self._timeouts.pop(attempt_id, None)
            log = _kept_log(self._logs.pop(attempt_id, None))
            name = f"worker-{worker.index}"
            out = AttemptOutcome(attempt_id, False, now, now, name, log_path=log, error=error)
            lost.append(out)
        self._close_worker(worker)
        fresh = self._spawn(worker.index)
        self._workers[worker.index] = fresh
        del self._by_conn[worker.conn]
        self._by_conn[fresh.conn] = fresh
        self._holder = {p: w for p, w in self._holder.items() if w is not worker}
        return list(lost)

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
