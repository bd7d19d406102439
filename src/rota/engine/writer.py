"""Group commit: state changes queued by the runner, committed by one writer thread in batches.

The runner never waits for a commit to dispatch more work; while one transaction is being made
durable, the next batch accumulates. Order is kept: batches are applied in the order queued.
Hooks queued with a change (callbacks, fault points) run only after it is committed. Between
batches the thread renews the run's lease (its heartbeat).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from rota.errors import RotaError
from rota.store.base import Change, RunChange, Store

Hook = Callable[[], None]


class LeaseLost(RotaError):
    """Raised when another runner took over the run this runner was driving."""


class BatchWriter:
    """Applies queued changes to *store* in a background thread, one transaction per batch.

    Args:
        heartbeat: called every *every* seconds; returns False when the lease is lost.
    """

    def __init__(
        self,
        store: Store,
        now: Callable[[], datetime],
        *,
        heartbeat: Callable[[], bool] | None = None,
        every: float = 5.0,
    ) -> None:
        self._store = store
        self._now = now
        self._heartbeat = heartbeat
        self._every = every
        self._cond = threading.Condition()
        self._changes: list[Change] = []
        self._run_changes: list[RunChange] = []
        self._hooks: list[Hook] = []
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self.batches = 0
        self._thread = threading.Thread(target=self._loop, name="rota-store-writer", daemon=True)
        self._thread.start()

    def put(
        self,
        changes: Sequence[Change],
        run_changes: Sequence[RunChange] = (),
        hooks: Sequence[Hook] = (),
    ) -> None:
        """Queue changes for the next batch, and hooks to run once they are committed.

        Raises:
            BaseException: the error a previous batch failed with (the run cannot go on).
        """
        with self._cond:
            self._raise_pending()
            self._changes.extend(changes)
            self._run_changes.extend(run_changes)
            self._hooks.extend(hooks)
            self._cond.notify()

    def flush(self) -> None:
        """Wait until everything queued so far is committed.

        Raises:
            BaseException: the error a batch failed with.
        """
        with self._cond:
            while self._pending() or self._busy:
                if self._error is not None or not self._thread.is_alive():
                    break  # a stopped writer commits nothing more: do not wait for it
                self._cond.wait(timeout=0.5)
            self._raise_pending()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` began: nothing queued from now on would be committed."""
        with self._cond:
            return self._closed

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join()

    def _pending(self) -> bool:
        return bool(self._changes or self._run_changes or self._hooks)

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def _take(self) -> tuple[list[Change], list[RunChange], list[Hook]] | None:
        """Wait for work (or a heartbeat's turn); None when closed and drained."""
        with self._cond:
            due = time.monotonic() + self._every
            while not (self._pending() or self._closed):
                left = due - time.monotonic()
                if self._heartbeat is not None and left <= 0:
                    break
                self._cond.wait(timeout=left if self._heartbeat is not None else None)
            if self._closed and not self._pending():
                return None
            batch = (self._changes, self._run_changes, self._hooks)
            self._changes, self._run_changes, self._hooks = [], [], []
            self._busy = True
            return batch

    def _loop(self) -> None:
        last_beat = time.monotonic()
        while (batch := self._take()) is not None:
            changes, run_changes, hooks = batch
            try:
                if changes or run_changes:
                    self._store.apply(changes, run_changes, at=self._now())
                    self.batches += 1
                if self._heartbeat is not None and time.monotonic() - last_beat >= self._every:
                    last_beat = time.monotonic()
                    if not self._heartbeat():
                        raise LeaseLost("another runner took over this run")
                for hook in hooks:
                    hook()
            except BaseException as err:  # handed to the runner's thread, which raises it
                with self._cond:
                    self._error = err
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if self._error is not None:
                return
