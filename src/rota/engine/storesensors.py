"""Sensors that read the metadata store are poked by the engine, under every executor.

``FlowRunSensor`` and ``DatasetSensor`` ask the store about other runs and datasets. Executors
never touch the store (DESIGN.md), and a Dask worker may not even reach the database, so the
runner hands their attempts to :class:`EngineSensors` instead of its executor: a thread of the
engine's process per attempt, given a read-only view of the store (``ctx.store``). Everything else
about such an attempt is as on a worker: its output goes to the artifact store, what it prints to
its log, ``poke`` mode sleeps in its thread and ``reschedule`` mode frees it between pokes.

:class:`RoutedExecutor` puts the two side by side behind the one ``Executor`` the run loop sees.
"""

from __future__ import annotations

import os
import queue
import threading
import time

from rota.artifacts.local import OutputCache
from rota.executors.attempt import crashed_outcome, run_attempt
from rota.executors.base import (
    AttemptEvent,
    AttemptOutcome,
    AttemptSpec,
    AttemptStarted,
    Executor,
)
from rota.executors.logs import ThreadCapture
from rota.executors.queues import drain
from rota.operators.base import StoreReader


def reads_store(spec: AttemptSpec) -> bool:
    """Whether *spec*'s operator is a sensor that reads the metadata store."""
    return bool(getattr(spec.op, "reads_store", False))


class EngineSensors:
    """Runs store-reading sensor attempts in threads of the engine, lending them *store*.

    Each attempt gets its own thread (a ``poke``-mode sensor sleeps in it between pokes); the
    capacity is unbounded, since they hold no worker.
    """

    name = "engine"

    def __init__(self, store: StoreReader) -> None:
        self._store = store
        self._events: queue.SimpleQueue[AttemptEvent] = queue.SimpleQueue()
        self._cache = OutputCache(16 * 1024 * 1024)
        self._capture: ThreadCapture | None = None
        self.running = 0

    def submit(self, attempt: AttemptSpec) -> None:
        if self._capture is None:  # only once a store sensor runs: most runs have none
            self._capture = ThreadCapture()
            self._capture.install()
        self.running += 1
        name = f"rota-sensor-{attempt.attempt_id}"
        threading.Thread(target=self._run, args=(attempt,), name=name, daemon=True).start()

    def _run(self, spec: AttemptSpec) -> None:
        assert self._capture is not None
        worker = f"engine:{os.getpid()}"
        started = time.time()
        self._events.put(AttemptStarted(spec.attempt_id, started, worker))
        try:
            outcome = run_attempt(
                spec,
                self._cache,
                self._capture,
                worker,
                store=self._store,
            )
        except BaseException as err:  # every attempt submitted gets an outcome
            outcome = crashed_outcome(spec.attempt_id, worker, err, started=started)
        self._events.put(outcome)

    def poll(self, timeout: float) -> list[AttemptEvent]:
        out = drain(self._events, timeout)
        self.running -= sum(1 for e in out if isinstance(e, AttemptOutcome))
        return out

    def close(self) -> None:
        """Put sys.stdout and sys.stderr back; sensor threads still poking end with the process."""
        if self._capture is not None:
            self._capture.uninstall()
            self._capture = None


class RoutedExecutor:
    """The run loop's one executor: store-reading sensors to *sensors*, the rest to *main*.

    The loop submits at most :meth:`capacity` attempts. One slot more than *main* has is offered,
    so a store sensor behind a full executor is not starved; an ordinary attempt that takes that
    slot waits here until *main* has room (it is reported started only when it starts).
    """

    def __init__(self, main: Executor, sensors: EngineSensors) -> None:
        self.main = main
        self.sensors = sensors
        self.name = main.name
        self._held: list[AttemptSpec] = []

    def capacity(self) -> int:
        if self._held:
            return 0
        return self.main.capacity() + 1

    def submit(self, attempt: AttemptSpec) -> None:
        if reads_store(attempt):
            self.sensors.submit(attempt)
        elif self.main.capacity() > 0:
            self.main.submit(attempt)
        else:
            self._held.append(attempt)

    def _release_held(self) -> None:
        while self._held and self.main.capacity() > 0:
            self.main.submit(self._held.pop(0))

    def poll(self, timeout: float) -> list[AttemptEvent]:
        self._release_held()
        if not self.sensors.running:
            events = self.main.poll(timeout)
        else:  # both: short waits on each in turn (either may return at once when idle)
            deadline = time.monotonic() + timeout
            events = []
            while True:
                step = min(0.005, max(0.0, deadline - time.monotonic()))
                events = self.main.poll(step)
                events += self.sensors.poll(0 if events else step)
                if events or time.monotonic() >= deadline:
                    break
        self._release_held()
        return events

    def close(self, *, cancel: bool = False) -> None:
        self.sensors.close()
        self.main.close(cancel=cancel)
