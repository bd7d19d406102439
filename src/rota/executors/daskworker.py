"""The Dask worker's side of the Dask executor: one Dask task runs one Rota attempt, once.

:func:`run_on_worker` is the function the engine submits. On the worker it

1. **claims** the attempt in the shared artifact store (:func:`rota.artifacts.shared.claim`). Dask
   runs a task again when the worker running it is lost; that second execution finds the claim,
   does not run the task and reports ``WorkerLost``, so the engine records the attempt as failed
   and retries it per the task's policy as a *new* attempt. No execution is hidden from the store.
2. runs the attempt in a **warm child process** of the Dask worker (a one-process local pool per
   worker thread), so a timeout ends the task's process and everything it started (its process
   group: SIGTERM, then SIGKILL), not just the future, and a task that kills its own process
   is a ``WorkerLost`` while the Dask worker lives on. The children die with the Dask worker.
3. reports the attempt's start to the engine through a Dask event topic, and watches its own Dask
   task: once the engine cancels it (``rota`` was interrupted, or its client went away), the
   child's group is ended at once.
4. returns the outcome together with what the attempt printed, masked (the engine writes it to the
   attempt's log, so ``rota tasks logs`` works for attempts that ran on other machines); a small
   one is also sent on the event topic, which spares the engine a request per attempt.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from rota.artifacts.shared import claim, claim_name
from rota.artifacts.store import open_artifact_store
from rota.executors.attempt import crashed_outcome
from rota.executors.base import LOST_MRO, AttemptOutcome, AttemptSpec, AttemptStarted, ErrorInfo
from rota.flowfile import import_flow_file

LOG_LIMIT: Final = 32 * 1024 * 1024
"""Bytes of an attempt's log shipped back; a longer log keeps its last LOG_LIMIT bytes."""
EVENT_LIMIT: Final = 16 * 1024
"""An outcome (with its log) this small also travels on the event topic, ahead of the result:
the engine then needs no extra request to fetch it. The scheduler keeps recent events in memory,
so bigger ones come only as the task's result."""

Payload = tuple[int, str, str, tuple[tuple[str, str], ...], bytes]
"""(attempt id, run id, artifact root, flow modules to import, pickled AttemptSpec)."""

_LOCAL = threading.local()
_SCRATCH: list[Path] = []


def _scratch() -> Path:
    """This worker process's private folder for the logs of the attempts it runs."""
    if not _SCRATCH:
        _SCRATCH.append(Path(tempfile.mkdtemp(prefix="rota-dask-")))
    return _SCRATCH[0]


def _pool() -> Any:
    """This worker thread's one-process pool (started on its first attempt)."""
    pool = getattr(_LOCAL, "pool", None)
    if pool is None:
        import multiprocessing

        from rota.executors.pool import LocalPoolExecutor

        # A nanny starts its Dask worker as a daemonic process, which multiprocessing forbids to
        # have children. Ours may: they end with this process (their lifeline pipe closes).
        multiprocessing.current_process().daemon = False
        pool = _LOCAL.pool = LocalPoolExecutor(1, str(_scratch()), start_method="forkserver")
    return pool


def _drop_pool() -> None:
    pool = getattr(_LOCAL, "pool", None)
    _LOCAL.pool = None
    if pool is not None:
        pool.close(cancel=True)


def lost_error(message: str) -> ErrorInfo:
    """The error of an attempt whose execution was lost with its worker."""
    return ErrorInfo("WorkerLost", message, mro=LOST_MRO)


def run_on_worker(payload: bytes, topic: str) -> tuple[AttemptOutcome, bytes | None]:
    """Run the attempt *payload* describes, at most once; return its outcome and its log's bytes.

    Every failure around the task becomes a failed outcome (never an exception), so the engine
    always hears a Rota error, never a Dask one.
    """
    from distributed import get_worker

    worker = get_worker()
    where = f"{socket.gethostname()}:{os.getpid()}"
    attempt_id, run_id, artifacts, modules, blob = pickle.loads(payload)
    try:
        first = claim(open_artifact_store(artifacts), claim_name(run_id, attempt_id), where)
    except Exception as err:
        return crashed_outcome(attempt_id, where, err), None
    if not first:
        now = time.time()
        error = lost_error(
            f"attempt {attempt_id} began on a Dask worker that was lost; Dask ran it again, "
            "which Rota does not: the task's retry policy decides"
        )
        return AttemptOutcome(attempt_id, False, now, now, where, error=error), None
    try:
        for _name, path in modules:
            import_flow_file(Path(path))
        spec: AttemptSpec = pickle.loads(blob)
    except Exception as err:
        return crashed_outcome(attempt_id, where, err), None
    return _run(spec, worker, topic)


def _run(spec: AttemptSpec, worker: Any, topic: str) -> tuple[AttemptOutcome, bytes | None]:
    scratch = _scratch() / f"{spec.attempt_id}.log"
    local = replace(spec, log_path=str(scratch))
    pool = _pool()
    pool.submit(local)
    key = worker.get_current_task()
    while True:
        for event in pool.poll(0.1):
            if isinstance(event, AttemptStarted):
                worker.log_event(topic, ("started", event.attempt_id, event.at, event.worker))
            else:
                result = event, _take_log(event.log_path)
                blob = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
                if len(blob) <= EVENT_LIMIT:
                    worker.log_event(topic, ("done", spec.attempt_id, blob))
                return result
        if _cancelled(worker, key):
            _drop_pool()  # ends the child's process group: the task stops now
            now = time.time()
            error = lost_error("the engine cancelled the attempt")
            return AttemptOutcome(spec.attempt_id, False, now, now, "dask", error=error), None


def _cancelled(worker: Any, key: Any) -> bool:
    """Whether the scheduler has released this task (its client cancelled it or went away)."""
    state = worker.state.tasks.get(key)
    return state is None or state.state in ("cancelled", "released", "forgotten")


def _take_log(path: str | None) -> bytes | None:
    """The bytes of the log at *path* (its tail past LOG_LIMIT), removed from this worker."""
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > LOG_LIMIT:
                fh.seek(size - LOG_LIMIT)
                note = f"[rota] the first {size - LOG_LIMIT} bytes of this log were cut\n"
                return note.encode() + fh.read()
            return fh.read()
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
