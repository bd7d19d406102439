"""Group commit: state changes queued by the runner, committed by one writer thread in batches.

The runner never waits for a commit to dispatch more work; while one transaction is being made
durable, the next batch accumulates. Order is kept: batches are applied in the order queued.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from rota.store.base import Change, RunChange, Store


class BatchWriter:
    """Applies queued changes to *store* in a background thread, one transaction per batch."""

    def __init__(self, store: Store, now: Callable[[], datetime]) -> None:
        self._store = store
        self._now = now
        self._cond = threading.Condition()
        self._changes: list[Change] = []
        self._run_changes: list[RunChange] = []
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self.batches = 0
        self._thread = threading.Thread(target=self._loop, name="rota-store-writer", daemon=True)
        self._thread.start()

    def put(self, changes: Sequence[Change], run_changes: Sequence[RunChange] = ()) -> None:
        """Queue changes for the next batch.

        Raises:
            BaseException: the error a previous batch failed with (the run cannot go on).
        """
        with self._cond:
            self._raise_pending()
            self._changes.extend(changes)
            self._run_changes.extend(run_changes)
            self._cond.notify()

    def flush(self) -> None:
        """Wait until everything queued so far is committed.

        Raises:
            BaseException: the error a batch failed with.
        """
        with self._cond:
            while (self._changes or self._run_changes or self._busy) and self._error is None:
                self._cond.wait()
            self._raise_pending()

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join()

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._changes or self._run_changes or self._closed):
                    self._cond.wait()
                if self._closed and not (self._changes or self._run_changes):
                    return
                changes, self._changes = self._changes, []
                run_changes, self._run_changes = self._run_changes, []
                self._busy = True
            try:
                self._store.apply(changes, run_changes, at=self._now())
                self.batches += 1
            except BaseException as err:  # handed to the runner's thread, which raises it
                with self._cond:
                    self._error = err
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if self._error is not None:
                return
