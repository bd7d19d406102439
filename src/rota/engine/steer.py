"""Steering runs by hand: cancel a run, pause or unpause a flow's schedule.

``rota cancel``, ``rota pause`` and the web UI call these; nothing else changes these facts.

A cancel ends a run as Airflow's "mark failed" does: the attempts in flight fail (``Cancelled``),
the tasks not run yet are skipped, and the run is ``failed``. A run that no live runner drives is
cancelled at once, in one transaction. A run a live runner drives is asked to stop: the request
is stored, the runner sees it at its next heartbeat (:class:`CancelWatch`), records the cancel
itself and stops its executor, killing what runs; a later ``rota resume`` runs the run again.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from rota.engine.book import RunBook
from rota.engine.lease import RunBusy, RunnerId, acquire
from rota.engine.resume import latest_by_key
from rota.errors import RotaError, UserError
from rota.model.states import RUN_TERMINAL, RunState, TaskState
from rota.store.base import AttemptRecord, Change, RunChange, RunRecord, Store

if TYPE_CHECKING:
    from rota.engine.writer import BatchWriter

CANCELLED: Final = "Cancelled"
"""The error type of an attempt that a cancel failed (and of the reason of a task it skipped)."""
_IN_FLIGHT: Final = frozenset(
    {TaskState.QUEUED, TaskState.RUNNING, TaskState.SENSING, TaskState.INTERRUPTED}
)


class RunCancelled(RotaError):
    """Raised in a runner when its run was cancelled (``rota cancel``, the UI) while it drove it."""


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """What :func:`cancel_run` did: ``cancelled`` at once, or ``requested`` of its live runner."""

    run_id: str
    how: str


def cancel_changes(
    run: RunRecord, states: Mapping[Any, tuple[int, TaskState]], now: datetime, by: str
) -> tuple[list[Change], list[RunChange]]:
    """The writes that cancel *run*: in-flight attempts fail, scheduled ones are skipped, the run
    fails. *states* maps each task (or mapped instance) to its latest attempt's id and state."""
    reason = f"run cancelled by {by}"
    changes: list[Change] = []
    for attempt_id, state in states.values():
        if state in _IN_FLIGHT:
            why = {"error_type": CANCELLED, "error_message": reason, "finished_at": now}
            changes.append(Change(attempt_id, state, TaskState.FAILED, why))
        elif state is TaskState.SCHEDULED:
            why = {"error_type": CANCELLED, "error_message": reason}
            changes.append(Change(attempt_id, state, TaskState.SKIPPED, why))
    return changes, [RunChange(run.run_id, run.state, RunState.FAILED, now)]


def _latest(records: list[AttemptRecord]) -> dict[Any, tuple[int, TaskState]]:
    return {key: (rec.id, rec.state) for key, rec in latest_by_key(records).items()}


def cancel_run(
    store: Store,
    run_id: str,
    *,
    by: str,
    now: datetime,
    stale_after: timedelta = timedelta(seconds=30),
) -> CancelOutcome:
    """Cancel run *run_id* (see the module docstring).

    Raises:
        NotFound: no such run.
        UserError: the run has ended already.
    """
    run = store.get_run(run_id)
    if run.state in RUN_TERMINAL:
        raise UserError(f"run {run_id} has ended ({run.state.value}); there is nothing to cancel")
    here = RunnerId.current()
    me = RunnerId(here.host, here.pid, f"{here.start}-cancel")  # never this process's runner
    try:
        taken = acquire(store, run_id, me, now, stale_after)
    except RunBusy:
        store.request_cancel(run_id, by, now)
        return CancelOutcome(run_id, "requested")
    try:
        if taken.run.state in RUN_TERMINAL:  # it ended while we looked
            raise UserError(f"run {run_id} has ended ({taken.run.state.value})")
        changes, run_changes = cancel_changes(taken.run, _latest(store.attempts(run_id)), now, by)
        store.apply(changes, run_changes, at=now)
    finally:
        store.release(run_id, str(me))
    return CancelOutcome(run_id, "cancelled")


class CancelWatch:
    """In a runner: whether a cancel of its run was asked since it began driving it.

    :meth:`check` reads the store (the runner's heartbeat calls it, every few seconds);
    :meth:`asked` answers from memory, so the run loop may ask after every event.
    """

    def __init__(self, store: Store, run_id: str, since: datetime) -> None:
        self._store = store
        self._run_id = run_id
        self._since = since
        self._seen = threading.Event()
        self.by = ""

    def check(self) -> None:
        """Look for a cancel request newer than the drive's start."""
        found = self._store.cancel_request(self._run_id)
        if found is not None and found[0] >= self._since:
            self.by = found[1]
            self._seen.set()

    def asked(self) -> bool:
        """Whether :meth:`check` found a cancel request."""
        return self._seen.is_set()


def stop_loop(book: RunBook, run: RunRecord, writer: BatchWriter, now: datetime, by: str) -> None:
    """In a runner whose run was cancelled: record the cancel, then raise RunCancelled.

    What *book* queued is committed first, then the cancel of every attempt not ended.

    Raises:
        RunCancelled: always; the runner's caller stops its executor, killing what runs.
    """
    pending, hooks = book.take()
    writer.put(pending, (), hooks)
    states = {key: (book.attempt[key].id, state) for key, state in book.state.items()}
    run = replace(run, state=RunState.RUNNING)
    changes, run_changes = cancel_changes(run, states, now, by)
    writer.put(changes, run_changes)
    writer.close()
    raise RunCancelled(f"run {run.run_id} was cancelled by {by}")


def set_paused(store: Store, flow: str, paused: bool, now: datetime) -> bool:
    """Pause (no new scheduled runs, none of its queued runs started) or unpause *flow*.

    A flow can be paused before the store has seen it (before its first run).

    Returns:
        True when that changed something (False: it was so already).

    Raises:
        DefinitionError: *flow* is not a valid flow name.
    """
    from rota.model.dag import check_name

    return store.set_paused(check_name(flow, what="flow name"), paused, now)
