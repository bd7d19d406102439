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
import pickle
import threading
import time
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from typing import Any, cast

import cloudpickle

from rota.errors import ExecutorError
from rota.executors.base import (
    AttemptEvent,
    AttemptOutcome,
    AttemptSpec,
    AttemptStarted,
    ErrorInfo,
)


def _context() -> Any:
    if "fork" in mp.get_all_start_methods() and threading.active_count() == 1:
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
    """Runs attempts in *workers* warm processes, at most *prefetch* queued per worker."""

    name = "local"

    def __init__(
        self,
        workers: int,
        logs_dir: str,
        *,
        prefetch: int = 1,
        cache_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self._logs_dir = logs_dir
        self._prefetch = max(1, prefetch)
        self._cache_bytes = cache_bytes
        self._blobs: dict[int, bytes] = {}
        self._op_ids: dict[Any, int] = {}
        self._keep: list[Any] = []  # operators keyed by id() stay alive so ids are not reused
        self._holder: dict[str, _Worker] = {}
        self._ctx = _context()
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
            args=(theirs, life_r, self._logs_dir, self._cache_bytes, inherited),
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
        worker.conn.send_bytes(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))

    def _choose(self, attempt: AttemptSpec) -> _Worker:
        for ref in attempt.inputs:
            holder = self._holder.get(ref.path) if ref.path else None
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
        if not busy:
            return []
        events: list[AttemptEvent] = []
        for ready in wait(busy, timeout):
            conn = cast(Connection, ready)
            worker = self._by_conn[conn]
            try:
                while conn.poll():
                    events.append(self._receive(worker, conn.recv()))
            except (EOFError, OSError):
                events.extend(self._replace_dead(worker))
        return events

    def _receive(self, worker: _Worker, msg: Any) -> AttemptEvent:
        if isinstance(msg, AttemptOutcome):
            worker.outstanding.discard(msg.attempt_id)
            if msg.output_path:
                self._holder[msg.output_path] = worker
            return msg
        _tag, attempt_id, at, name = msg
        return AttemptStarted(attempt_id, at, name)

    def _replace_dead(self, worker: _Worker) -> list[AttemptEvent]:
        worker.proc.join(timeout=1)
        code = worker.proc.exitcode
        now = time.time()
        lost = [
            AttemptOutcome(
                attempt_id,
                False,
                now,
                now,
                f"worker-{worker.index}",
                error=ErrorInfo(
                    "WorkerLost", f"worker process died (exit code {code})", exit_code=code
                ),
            )
            for attempt_id in sorted(worker.outstanding)
        ]
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
        for w in self._workers:
            self._close_worker(w)  # the worker sees EOF and returns; the lifeline ends it if busy
        deadline = time.monotonic() + (0.5 if cancel else 5.0)
        for w in self._workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=5)
