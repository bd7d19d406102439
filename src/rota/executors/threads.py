"""Executors that run attempts in the engine's own process: sequentially, or in threads."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque

from rota.artifacts.local import OutputCache
from rota.executors.attempt import crashed_outcome, run_attempt
from rota.executors.base import AttemptEvent, AttemptOutcome, AttemptSpec, AttemptStarted
from rota.executors.logs import ThreadCapture
from rota.executors.queues import drain
from rota.operators.liveends import end_live


class InProcessExecutor:
    """Runs one attempt at a time, in the calling thread, when :meth:`poll` is called.

    For debugging: a breakpoint in a task stops the whole run right there. A poll reports that
    the next attempt starts, and the poll after runs it, so the engine records the attempt as
    running (with its log) before it runs.
    """

    name = "inprocess"

    def __init__(self) -> None:
        self._pending: deque[AttemptSpec] = deque()
        self._starting: AttemptSpec | None = None
        self._cache = OutputCache()
        self._capture = ThreadCapture()
        self._capture.install()
        self._worker = f"inprocess:{os.getpid()}"

    def capacity(self) -> int:
        return 0 if self._pending or self._starting else 1

    def submit(self, attempt: AttemptSpec) -> None:
        self._pending.append(attempt)

    def poll(self, timeout: float) -> list[AttemptEvent]:
        spec, self._starting = self._starting, None
        if spec is not None:  # a Ctrl-C passes through to the engine: the attempt is interrupted
            return [run_attempt(spec, self._cache, self._capture, self._worker)]
        if not self._pending:  # nothing to run: wait as asked (a caller waiting for a due time)
            time.sleep(max(0.0, timeout))
            return []
        self._starting = self._pending.popleft()
        return [AttemptStarted(self._starting.attempt_id, time.time(), self._worker)]

    def close(self, *, cancel: bool = False) -> None:
        del cancel
        self._capture.uninstall()


class ThreadExecutor:
    """Runs attempts in a pool of threads of this process (good for I/O-bound tasks)."""

    name = "threads"

    def __init__(self, workers: int) -> None:
        self._size = max(1, workers)
        self._inbox: queue.SimpleQueue[AttemptSpec | None] = queue.SimpleQueue()
        self._events: queue.SimpleQueue[AttemptEvent] = queue.SimpleQueue()
        self._busy = 0
        self._cache = OutputCache()
        self._capture = ThreadCapture()
        self._capture.install()
        self._threads = [
            threading.Thread(target=self._work, name=f"rota-worker-{i}", daemon=True)
            for i in range(self._size)
        ]
        for t in self._threads:
            t.start()

    def capacity(self) -> int:
        return self._size - self._busy

    def submit(self, attempt: AttemptSpec) -> None:
        self._busy += 1
        self._inbox.put(attempt)

    def poll(self, timeout: float) -> list[AttemptEvent]:
        out = drain(self._events, timeout)
        self._busy -= sum(1 for e in out if isinstance(e, AttemptOutcome))
        return out

    def _work(self) -> None:
        worker = f"thread:{os.getpid()}:{threading.current_thread().name}"
        while True:
            spec = self._inbox.get()
            if spec is None:
                return
            started = time.time()
            self._events.put(AttemptStarted(spec.attempt_id, started, worker))
            try:
                outcome = run_attempt(spec, self._cache, self._capture, worker)
            except BaseException as err:  # a KeyboardInterrupt a task raised: this thread goes on
                outcome = crashed_outcome(spec.attempt_id, worker, err, started=started)
            self._events.put(outcome)  # every attempt submitted gets an outcome, or poll() hangs

    def close(self, *, cancel: bool = False) -> None:
        for _ in self._threads:
            self._inbox.put(None)
        if cancel:  # a thread cannot be ended: what its attempt started outside it can
            end_live()
        else:
            for t in self._threads:
                t.join()
        self._capture.uninstall()
