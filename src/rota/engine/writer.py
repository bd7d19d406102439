"""Group commit: state changes queued by the runner, committed by one writer thread in batches.

The runner never waits for a commit to dispatch more work; while one transaction is being made
durable, the next batch accumulates. Order is kept: batches are applied in the order queued.
Hooks queued with a change (callbacks, fault points) run only after it is committed.

Under a :class:`~rota.store.base.Lease`, every batch is committed only while this runner still
holds its run, and renews the lease in the same transaction; between batches the thread renews
it every *every* seconds. When the store is out of reach (:class:`~rota.errors.StoreUnavailable`)
the writer keeps its batch and tries it again, with a growing pause, while :meth:`can_dispatch`
tells the runner to start nothing new. Once it has not renewed the lease for *fence_after*
seconds, it gives up with :class:`~rota.errors.LeaseExpired`: another scheduler may take the run
over soon, so this runner must stop its attempts first. A try already in flight when the fence
strikes (blocked in the database) may still commit once the database answers; that is safe,
because its transaction commits only while this runner still holds the run.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final

from rota.errors import ConcurrentUpdate, LeaseExpired, LeaseLost, StoreUnavailable
from rota.model.safetext import safe_text
from rota.store.base import Change, Lease, RunChange, Store

Hook = Callable[[], None]
PAUSES: Final = (0.05, 1.0)
"""The first and the longest pause between tries of a batch while the store is out of reach."""

__all__ = ["BatchWriter", "Hook", "LeaseLost"]


class BatchWriter:
    """Applies queued changes to *store* in a background thread, one transaction per batch.

    Args:
        lease: the run this writer's runner holds: batches commit only while it does, and renew
            it; a heartbeat renews it every *every* seconds when there is nothing to write.
        fence_after: with a lease, seconds without renewing it after which the writer stops
            (:class:`~rota.errors.LeaseExpired`); None: never. The lease is renewed at least
            every third of it, whatever *every* says.
        watch: called in the writer's thread about every *every* seconds, after a commit or a
            heartbeat, while the store answers (the runner's cancel watch); a
            :class:`~rota.errors.StoreUnavailable` it raises is ignored until the next turn.
    """

    def __init__(
        self,
        store: Store,
        now: Callable[[], datetime],
        *,
        lease: Lease | None = None,
        every: float = 5.0,
        fence_after: float | None = None,
        watch: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._now = now
        self._lease = lease
        self._fence_after = fence_after if lease is not None else None
        # renew often enough that a healthy writer never reaches its own fence
        self._every = every if self._fence_after is None else min(every, self._fence_after / 3)
        self._cond = threading.Condition()
        self._changes: list[Change] = []
        self._run_changes: list[RunChange] = []
        self._hooks: list[Hook] = []
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self._down_since: float | None = None
        self._renewed = time.monotonic()
        self._watch = watch
        self._watched = self._renewed
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

    def can_dispatch(self, wait: float = 0.05) -> bool:
        """Whether the runner may start new attempts: not while the store is out of reach (what
        ends meanwhile waits here to be committed). While it is, first wait up to *wait* seconds
        for it to come back, so that a loop asking again and again does not spin.

        Raises:
            BaseException: the error the writer stopped with.
            LeaseExpired: the lease was not renewed for *fence_after* seconds (a commit hangs).
        """
        with self._cond:
            self._raise_pending()
            self._check_fence()
            if self._down_since is not None:
                self._cond.wait(timeout=wait)
                self._raise_pending()
            return self._down_since is None

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

    def _check_fence(self) -> None:
        """Raise LeaseExpired once the lease went unrenewed for *fence_after* seconds; from then
        on the writer tries nothing more (called with the condition held)."""
        if self._fence_after is None or self._lease is None:
            return
        silent = time.monotonic() - self._renewed
        if silent > self._fence_after:
            self._error = LeaseExpired(
                f"run {self._lease.run_id}: lease not renewed for {silent:.0f}s (the store is out "
                "of reach); stopping so that another scheduler can take the run over"
            )
            raise self._error

    def _take(self) -> tuple[list[Change], list[RunChange], list[Hook]] | None:
        """Wait for work (or a heartbeat's turn); None when closed and drained."""
        with self._cond:
            while not (self._pending() or self._closed):
                left = self._renewed + self._every - time.monotonic()
                if self._lease is not None and left <= 0:
                    break
                self._cond.wait(timeout=left if self._lease is not None else None)
            if self._closed and not self._pending():
                return None
            batch = (self._changes, self._run_changes, self._hooks)
            self._changes, self._run_changes, self._hooks = [], [], []
            self._busy = True
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            changes, run_changes, hooks = batch
            try:
                self._commit(changes, run_changes)
                self._watch_if_due()
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

    def _commit(self, changes: list[Change], run_changes: list[RunChange]) -> None:
        """Commit one batch (or renew the lease), trying again while the store is out of reach.

        Raises:
            LeaseLost: another runner holds the run. LeaseExpired: see :meth:`_check_fence`.
            ConcurrentUpdate: a row was not in its expected state, and not because an earlier
                try of this batch was committed after all.
        """
        unknown: dict[datetime, float] = {}  # tries whose commit may have happened: when
        pause = PAUSES[0]
        while True:
            with self._cond:
                self._raise_pending()  # the runner found the lease expired meanwhile
            try:
                self._try(changes, run_changes, unknown)
                self._back_up()
                return
            except StoreUnavailable as err:
                self._went_down(err)
            with self._cond:
                self._check_fence()
            time.sleep(pause)  # not woken by new puts: they would only make the store busier
            pause = min(pause * 2, PAUSES[1])

    def _try(
        self, changes: list[Change], run_changes: list[RunChange], unknown: dict[datetime, float]
    ) -> None:
        """One try of :meth:`_commit`; a mismatch after a try of unknown outcome is looked into.

        Raises:
            StoreUnavailable: the store is out of reach (try again).
        """
        try:
            self._write_once(changes, run_changes, unknown)
        except ConcurrentUpdate:
            if not unknown or not self._committed_before(unknown):
                raise

    def _write_once(
        self, changes: list[Change], run_changes: list[RunChange], unknown: dict[datetime, float]
    ) -> None:
        began = time.monotonic()
        if changes or run_changes:
            at = self._now()
            try:
                self._store.apply(changes, run_changes, at=at, lease=self._lease)
            except StoreUnavailable:
                unknown[at] = began
                raise
            self.batches += 1
        elif self._lease is not None and began - self._renewed >= self._every:
            if not self._store.heartbeat(self._lease.run_id, self._lease.owner, self._now()):
                raise LeaseLost(f"another runner took over run {self._lease.run_id}")
        else:
            return
        if self._lease is not None:
            self._renewed = began

    def _watch_if_due(self) -> None:
        began = time.monotonic()
        if self._watch is None or began - self._watched < self._every:
            return
        self._watched = began
        # the store went out of reach just now: the commits notice it, the next turn tries again
        with contextlib.suppress(StoreUnavailable):
            self._watch()

    def _committed_before(self, unknown: dict[datetime, float]) -> bool:
        """Whether one of the tries made at *unknown* times was committed after all: its lease
        renewal (the run's heartbeat, stamped with the try's time) is the one stored.

        Raises:
            StoreUnavailable: the store went out of reach again (the batch is tried again).
        """
        if self._lease is None:
            return False
        run = self._store.get_run(self._lease.run_id)
        if run.owner != self._lease.owner or run.heartbeat_at not in unknown:
            return False
        self._renewed = unknown[run.heartbeat_at]  # that try renewed the lease: the fence counts
        return True

    def _went_down(self, err: StoreUnavailable) -> None:
        with self._cond:
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
        if first:
            print(
                f"rota: {safe_text(err)}; committing nothing and starting no task until the "
                "store is back",
                file=sys.stderr,
            )

    def _back_up(self) -> None:
        if self._down_since is None:
            return
        with self._cond:
            since, self._down_since = self._down_since, None
            self._cond.notify_all()
        if since is not None:
            gone = time.monotonic() - since
            print(f"rota: the store is back after {gone:.1f}s", file=sys.stderr)
