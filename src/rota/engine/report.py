"""Summaries of runs built from the store: what ``rota run --json`` and ``rota runs show`` print.

A run's state is its leaves' verdict (:func:`rota.model.dag.run_succeeded`), so a summary lists
the run's failed tasks beside it: a run can succeed with failures a fallback task handled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rota.model.secrets import display_params
from rota.model.states import RunState, TaskState
from rota.store.base import AttemptRecord, RunRecord, Store

NOT_RUN = frozenset({TaskState.SKIPPED, TaskState.UPSTREAM_FAILED})
"""States of tasks that ended without running; their attempt's ``error_message`` says why (the
trigger rule and upstream counts, or the branch that chose), when the engine decided it."""


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return round((b - a).total_seconds(), 6)


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """The latest attempt of one task, with how many attempts it took and where time went."""

    task_id: str
    state: TaskState
    attempts: int
    latest: AttemptRecord
    mapped: dict[str, int] | None = None
    instances: Mapping[int, AttemptRecord] | None = None
    """A mapped task's instances: the latest attempt of each, by map index."""

    def failed_instances(self) -> list[AttemptRecord]:
        """The latest attempts of the instances that failed, by map index: their own errors
        (the task's row only says how many failed)."""
        found = (self.instances or {}).items()
        return [rec for _, rec in sorted(found) if rec.state is TaskState.FAILED]

    @property
    def duration_s(self) -> float | None:
        return _seconds(self.latest.started_at, self.latest.finished_at)

    def waits(self) -> dict[str, float | None]:
        """Seconds spent waiting in the engine's queue, in dispatch, executing, and in hand-off."""
        a = self.latest
        return {
            "queue_s": _seconds(a.queued_at, a.dispatched_at),
            "dispatch_s": _seconds(a.dispatched_at, a.started_at),
            "execute_s": _seconds(a.started_at, a.finished_at),
            "handoff_s": _seconds(a.finished_at, a.committed_at),
        }


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run and its tasks, as stored."""

    run: RunRecord
    tasks: dict[str, TaskSummary]

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def state(self) -> RunState:
        return self.run.state

    @property
    def exit_code(self) -> int:
        """0 when the run succeeded, 1 otherwise."""
        return 0 if self.run.state is RunState.SUCCESS else 1

    @property
    def failed_tasks(self) -> list[str]:
        """Tasks that failed, leaves or not: a run whose leaves all succeeded (or were skipped)
        succeeds even when some failed, and these are the failures it handled."""
        return [tid for tid, t in self.tasks.items() if t.state is TaskState.FAILED]

    def to_json(self, *, detail: bool = False) -> dict[str, Any]:
        """The ``--json`` shape: run id, flow, state, parameters (secrets as ``***``) and per
        task state, attempts, duration."""
        tasks: dict[str, Any] = {}
        for tid, t in self.tasks.items():
            entry: dict[str, Any] = {
                "state": t.state.value,
                "attempts": t.attempts,
                "duration_s": t.duration_s,
            }
            if t.mapped is not None:
                entry["mapped"] = t.mapped
            if t.failed_instances():
                entry["failed_instances"] = [_instance_json(r) for r in t.failed_instances()]
            if t.state in NOT_RUN and t.latest.error_message:
                entry["reason"] = t.latest.error_message
            if detail:
                entry.update(t.waits())
                entry["error"] = t.latest.error_message
            tasks[tid] = entry
        return {
            "run_id": self.run.run_id,
            "flow": self.run.flow,
            "state": self.run.state.value,
            "logical_date": self.run.logical_date.isoformat() if self.run.logical_date else None,
            "params": display_params(self.run.params),
            "param_changes": list(self.run.param_changes or []),
            "failed_tasks": self.failed_tasks,
            "tasks": tasks,
        }


def _instance_json(rec: AttemptRecord) -> dict[str, Any]:
    return {
        "index": rec.map_index,
        "attempt": rec.try_number,
        "error_type": rec.error_type,
        "error": rec.error_message,
    }


def run_json(run: RunRecord) -> dict[str, Any]:
    """One line of ``rota runs list --json``."""
    return {
        "run_id": run.run_id,
        "flow": run.flow,
        "state": run.state.value,
        "started": run.started_at.isoformat() if run.started_at else None,
        "ended": run.ended_at.isoformat() if run.ended_at else None,
        "logical_date": run.logical_date.isoformat() if run.logical_date else None,
        "run_type": run.run_type,
    }


def summarize(store: Store, run_id: str) -> RunSummary:
    """Read run *run_id* and its attempts back from the store.

    A mapped task appears once (its row as a whole), with its instances counted in ``mapped``.

    Raises:
        NotFound: no such run.
    """
    return summarize_records(store.get_run(run_id), store.attempts(run_id))


def summarize_records(run: RunRecord, records: Iterable[AttemptRecord]) -> RunSummary:
    """The summary of *run* from *records*, its attempts in creation (id) order: all of them, or
    those of some of its tasks (a page), with a mapped task's instance counts from *records*."""
    latest: dict[str, AttemptRecord] = {}
    counts: dict[str, int] = {}
    instances: dict[str, dict[int, AttemptRecord]] = {}
    for rec in records:
        if rec.map_index >= 0:
            seen = instances.setdefault(rec.task_id, {})
            prev_inst = seen.get(rec.map_index)
            if prev_inst is None or rec.try_number >= prev_inst.try_number:
                seen[rec.map_index] = rec
            continue
        prev = latest.get(rec.task_id)
        if prev is None or rec.try_number >= prev.try_number:
            latest[rec.task_id] = rec
        if rec.started_at is not None:
            counts[rec.task_id] = counts.get(rec.task_id, 0) + 1
    tasks = {
        tid: TaskSummary(
            tid, rec.state, counts.get(tid, 0), rec, _mapped(instances.get(tid)), instances.get(tid)
        )
        for tid, rec in latest.items()
    }
    return RunSummary(run, tasks)


def _mapped(instances: dict[int, AttemptRecord] | None) -> dict[str, int] | None:
    """Counts of a mapped task's instances by the state of their latest attempts."""
    if instances is None:
        return None
    out: dict[str, int] = {"count": len(instances)}
    for rec in instances.values():
        out[rec.state.value] = out.get(rec.state.value, 0) + 1
    return out
