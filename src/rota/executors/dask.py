"""The Dask executor: attempts run on the workers of a Dask distributed cluster.

Each attempt is one Dask task of :func:`rota.executors.daskworker.run_on_worker` (which says what
happens on the worker); the attempts submitted in one step of the run loop reach the scheduler
together, in one ``Client.map`` per kind of resources. This side never blocks on a future: a done
callback puts each finished future on the queue :meth:`DaskExecutor.poll` reads, and the workers'
"started" reports arrive on an event topic of this executor's own. Finished futures are gathered
in one request per poll; small outcomes also come on that topic, ahead of the result, and need no
request at all.

What the workers share with the engine is the artifact store (outputs, claims and checkpoints
live there, :mod:`rota.artifacts.shared`); logs travel back with the outcome and are written here,
under ``ROTA_HOME``, as the local executors write them. Nothing here, nor on a worker, touches the
metadata store.

Without an address the executor starts a ``LocalCluster`` on 127.0.0.1 (for trying it out).
"""

from __future__ import annotations

import contextlib
import pickle
import queue
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import cloudpickle

from rota.artifacts.shared import checkpoint_url
from rota.errors import ConfigError
from rota.executors.attempt import crashed_outcome, describe_error
from rota.executors.base import (
    AttemptEvent,
    AttemptOutcome,
    AttemptSpec,
    AttemptStarted,
    ErrorInfo,
)
from rota.executors.daskworker import lost_error, run_on_worker
from rota.executors.queues import drain
from rota.home import open_private

UNMET_MRO: Final = (
    "rota.errors.ResourceUnavailable",
    "rota.errors.ExecutorError",
    "rota.errors.RotaError",
    "builtins.Exception",
)
_INFO_EVERY: Final = 1.0  # seconds between looks at the cluster's workers


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            "the dask executor needs Dask distributed: pip install 'rota[dask]'"
        ) from None
    return distributed


def connect(address: str, *, workers: int, timeout: float) -> tuple[Any, Any]:
    """A client of the scheduler at *address*, or of a new LocalCluster of *workers* processes.

    Returns:
        (client, the LocalCluster started, or None).

    Raises:
        ConfigError: Dask is not installed, or no scheduler answers at *address* in *timeout*.
    """
    distributed = _distributed()
    if not address:
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True,
            host="127.0.0.1", dashboard_address=None, silence_logs=50,
        )  # fmt: skip
        return distributed.Client(cluster, set_as_default=False), cluster
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise ConfigError(f"cannot reach the Dask scheduler at {address}: {err}") from None
    return client, None


class DaskExecutor:
    """Runs attempts on a Dask cluster; at most *prefetch* per worker thread are submitted."""

    name = "dask"

    def __init__(
        self,
        address: str = "",
        *,
        workers: int = 2,
        prefetch: int = 16,
        connect_timeout: float = 10.0,
    ) -> None:
        self._client, self._cluster = connect(address, workers=workers, timeout=connect_timeout)
        self._prefetch = max(1, prefetch)
        self._topic = f"rota-{uuid.uuid4().hex}"
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._futures: dict[int, Any] = {}
        self._specs: dict[int, AttemptSpec] = {}
        self._started: set[int] = set()
        self._pending: list[tuple[int, bytes, tuple[tuple[str, float], ...]]] = []
        self._info: tuple[float, list[dict[str, Any]]] = (-_INFO_EVERY, [])
        self._client.subscribe_topic(self._topic, self._on_event)

    # --- what the cluster has ------------------------------------------------------------------
    def _workers(self) -> list[dict[str, Any]]:
        at, info = self._info
        now = time.monotonic()
        if now - at >= _INFO_EVERY:
            found = self._client.scheduler_info(n_workers=-1).get("workers", {})
            info = list(found.values())
            self._info = (now, info)
        return info

    def capacity(self) -> int:
        threads = sum(int(w.get("nthreads", 1)) for w in self._workers())
        return max(1, threads) * self._prefetch - len(self._futures)

    def unmet(self, resources: dict[str, float]) -> str | None:
        """Why no worker of the cluster can run a task needing *resources* (None: one can)."""
        if not resources:
            return None
        workers = self._workers()
        for w in workers:
            have = w.get("resources") or {}
            if all(have.get(name, 0) >= amount for name, amount in resources.items()):
                return None
        wanted = ", ".join(f"{k}={v:g}" for k, v in sorted(resources.items()))
        kinds = sorted(
            {f"{k}={v:g}" for w in workers for k, v in (w.get("resources") or {}).items()}
        )
        offered = ", ".join(kinds) if kinds else "none"
        return (
            f"no Dask worker has the resources {wanted} (the {len(workers)} workers offer: "
            f"{offered}); start workers with --resources, or change the task's resources="
        )

    # --- submitting ------------------------------------------------------------------------------
    def submit(self, attempt: AttemptSpec) -> None:
        aid = attempt.attempt_id
        self._specs[aid] = attempt
        why = self.unmet(dict(attempt.resources))
        if why is not None:
            now = time.time()
            error = ErrorInfo("ResourceUnavailable", why, mro=UNMET_MRO)
            self._inbox.put(("failed", AttemptOutcome(aid, False, now, now, "dask", error=error)))
            return
        try:
            payload = self._payload(attempt)
        except Exception as err:  # arguments that do not pickle
            self._inbox.put(("failed", crashed_outcome(aid, "dask", err)))
            return
        self._futures[aid] = None  # submitted at the next poll, with the others of this step
        self._pending.append((aid, payload, tuple(sorted(attempt.resources.items()))))

    def _flush(self) -> None:
        """Send the attempts submitted since the last poll: one graph per kind of resources, so
        the scheduler takes a step's attempts in one message rather than one each."""
        groups: dict[tuple[tuple[str, float], ...], list[tuple[int, bytes]]] = {}
        for aid, payload, resources in self._pending:
            groups.setdefault(resources, []).append((aid, payload))
        self._pending = []
        for resources, batch in groups.items():
            futures = self._client.map(
                run_on_worker, [p for _, p in batch], topic=self._topic,
                key=[f"{self._topic}-{aid}" for aid, _ in batch], pure=False, retries=0,
                resources=dict(resources) or None,
            )  # fmt: skip
            for (aid, _), future in zip(batch, futures, strict=True):
                self._futures[aid] = future
                future.add_done_callback(lambda f, aid=aid: self._inbox.put(("done", (aid, f))))

    @staticmethod
    def _payload(spec: AttemptSpec) -> bytes:
        # The checkpoint lives in the artifact store, which every worker reaches.
        name = spec.task_id if spec.map_index < 0 else f"{spec.task_id}@{spec.map_index}"
        shared = replace(spec, checkpoint_path=checkpoint_url(spec.artifacts, spec.run_id, name))
        blob = cloudpickle.dumps(shared, protocol=pickle.HIGHEST_PROTOCOL)
        message = (spec.attempt_id, spec.run_id, spec.artifacts, spec.modules, blob)
        return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)

    def _on_event(self, event: tuple[float, Any]) -> None:
        _, msg = event
        if not isinstance(msg, list | tuple) or not msg:
            return
        if msg[0] == "started" and len(msg) == 4:
            self._inbox.put(("started", AttemptStarted(int(msg[1]), float(msg[2]), str(msg[3]))))
        elif msg[0] == "done" and len(msg) == 3 and isinstance(msg[2], bytes):
            self._inbox.put(("outcome", (int(msg[1]), msg[2])))

    # --- hearing back ----------------------------------------------------------------------------
    def poll(self, timeout: float) -> list[AttemptEvent]:
        self._flush()
        items = drain(self._inbox, timeout)
        events: list[AttemptEvent] = []
        done: list[tuple[int, Any]] = []
        for kind, value in items:
            if kind == "started":
                if value.attempt_id in self._futures and value.attempt_id not in self._started:
                    self._started.add(value.attempt_id)
                    events.append(value)
            elif kind == "failed":
                self._specs.pop(value.attempt_id, None)
                events.append(value)
            elif kind == "outcome":  # ahead of its future's result: no request to fetch it
                if value[0] in self._futures:
                    events.append(self._finish(value[0], pickle.loads(value[1])))
            else:
                done.append(value)
        done = [(aid, f) for aid, f in done if aid in self._futures]  # not heard of already
        results = self._gather(done)
        events.extend(self._finish(aid, results.get(aid)) for aid, _ in done)
        return events

    def _gather(self, done: list[tuple[int, Any]]) -> dict[int, Any]:
        """The results of the finished futures *done*, fetched in one request."""
        ok = [(aid, f) for aid, f in done if f.status == "finished"]
        if not ok:
            return {}
        try:
            values = self._client.gather([f for _, f in ok], errors="skip")
        except Exception:  # a result that cannot be fetched is reported one by one below
            values = []
        return {aid: v for (aid, _), v in zip(ok, values, strict=False)}

    def _finish(self, aid: int, result: Any) -> AttemptOutcome:
        future = self._futures.pop(aid)
        self._started.discard(aid)
        spec = self._specs.pop(aid)
        if result is None:
            return self._failed(aid, future)
        outcome, log = result
        return self._keep_log(spec, outcome, log)

    @staticmethod
    def _failed(aid: int, future: Any) -> AttemptOutcome:
        """The outcome of a future that ended without a result of ours."""
        now = time.time()
        if future.status == "cancelled":
            return AttemptOutcome(aid, False, now, now, "dask", error=lost_error("cancelled"))
        err = future.exception() if future.status == "error" else None
        if err is None:
            return AttemptOutcome(aid, False, now, now, "dask", error=lost_error("no result"))
        if type(err).__name__ == "KilledWorker":  # Dask gave up after workers died running it
            return AttemptOutcome(aid, False, now, now, "dask", error=lost_error(str(err)))
        return crashed_outcome(aid, "dask", err)

    @staticmethod
    def _keep_log(spec: AttemptSpec, outcome: AttemptOutcome, log: bytes | None) -> AttemptOutcome:
        """*outcome* once what the attempt printed is in its log under ROTA_HOME (a sensor's later
        pokes add to it); a log that cannot be written fails the attempt with that error."""
        append = spec.pokes > 0
        if not log:
            kept = spec.log_path if append and Path(spec.log_path).exists() else None
            return replace(outcome, log_path=kept)
        try:
            with open(open_private(Path(spec.log_path), append=append), "ab") as fh:
                fh.write(log)
        except OSError as err:
            lost = describe_error(err)
            if outcome.error is None:
                return replace(
                    outcome,
                    ok=False,
                    log_path=None,
                    error=lost,
                    output_path=None,
                    output_inline=None,
                )
            note = f"\n(the attempt's log could not be saved: {lost.type_name}: {lost.message})\n"
            error = replace(outcome.error, traceback=outcome.error.traceback + note)
            return replace(outcome, log_path=None, error=error)
        return replace(outcome, log_path=spec.log_path)

    def close(self, *, cancel: bool = False) -> None:
        with contextlib.suppress(Exception):
            self._client.unsubscribe_topic(self._topic)
        futures = [f for f in self._futures.values() if f is not None]
        if cancel and futures:
            with contextlib.suppress(Exception):
                self._client.cancel(futures, force=True)
        with contextlib.suppress(Exception):
            self._client.close()
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close()
