"""Task and run states, the transition tables, and the one check every state change passes.

The store's single writer calls :func:`check_task_transition` / :func:`check_run_transition`
before it writes; nothing else changes state (DESIGN.md, invariant 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from rota.errors import InvalidTransition


class TaskState(StrEnum):
    """The state of one task attempt."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SENSING = "sensing"
    UP_FOR_RETRY = "up_for_retry"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    INTERRUPTED = "interrupted"
    CACHED = "cached"
    """Succeeded without running: an earlier attempt with the same cache key was reused."""


class RunState(StrEnum):
    """The state of one run of a flow."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


_T = TaskState
_TASK_ALLOWED: Final[Mapping[TaskState, frozenset[TaskState]]] = {
    _T.SCHEDULED: frozenset({_T.QUEUED, _T.SKIPPED, _T.UPSTREAM_FAILED}),
    # QUEUED -> FAILED: the attempt could not be started (its worker died before it began).
    _T.QUEUED: frozenset({_T.RUNNING, _T.FAILED, _T.INTERRUPTED, _T.CACHED}),
    _T.RUNNING: frozenset(
        {_T.SUCCESS, _T.FAILED, _T.UP_FOR_RETRY, _T.SENSING, _T.SKIPPED, _T.INTERRUPTED}
    ),
    _T.SENSING: frozenset({_T.QUEUED, _T.FAILED, _T.SKIPPED, _T.INTERRUPTED}),
    _T.UP_FOR_RETRY: frozenset({_T.QUEUED}),
    _T.INTERRUPTED: frozenset({_T.QUEUED, _T.FAILED}),
}

_R = RunState
_RUN_ALLOWED: Final[Mapping[RunState, frozenset[RunState]]] = {
    _R.QUEUED: frozenset({_R.RUNNING, _R.FAILED}),
    _R.RUNNING: frozenset({_R.SUCCESS, _R.FAILED, _R.INTERRUPTED}),
    # A failed or interrupted run can be resumed; any finished run can have tasks cleared,
    # which queues it again for a resume.
    _R.SUCCESS: frozenset({_R.QUEUED}),
    _R.FAILED: frozenset({_R.RUNNING, _R.QUEUED}),
    _R.INTERRUPTED: frozenset({_R.RUNNING, _R.FAILED, _R.QUEUED}),
}

TASK_INITIAL: Final = TaskState.SCHEDULED
RUN_INITIAL: Final = RunState.QUEUED

TERMINAL: Final[frozenset[TaskState]] = frozenset(
    {_T.SUCCESS, _T.CACHED, _T.FAILED, _T.SKIPPED, _T.UPSTREAM_FAILED}
)
"""Task states that no transition leaves."""

SUCCEEDED: Final[frozenset[TaskState]] = frozenset({_T.SUCCESS, _T.CACHED})
"""Task states whose stored output downstream tasks and resumes may reuse."""

FAILURES: Final[frozenset[TaskState]] = frozenset({_T.FAILED, _T.UPSTREAM_FAILED})
"""Terminal task states that make a run fail."""

RUN_TERMINAL: Final[frozenset[RunState]] = frozenset({_R.SUCCESS, _R.FAILED})


def check_task_transition(old: TaskState, new: TaskState, *, what: str = "") -> None:
    """Raise InvalidTransition unless a task attempt may move from *old* to *new*.

    Raises:
        InvalidTransition: the table has no such edge.
    """
    if new not in _TASK_ALLOWED.get(old, frozenset()):
        raise InvalidTransition("task", old.value, new.value, what=what)


def check_run_transition(old: RunState, new: RunState, *, what: str = "") -> None:
    """Raise InvalidTransition unless a run may move from *old* to *new*.

    Raises:
        InvalidTransition: the table has no such edge.
    """
    if new not in _RUN_ALLOWED.get(old, frozenset()):
        raise InvalidTransition("run", old.value, new.value, what=what)


def task_successors(state: TaskState) -> frozenset[TaskState]:
    """The states a task attempt in *state* may move to next."""
    return _TASK_ALLOWED.get(state, frozenset())
