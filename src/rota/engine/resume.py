"""Planning a resume: which tasks of a run to run again, and why.

Succeeded tasks whose code is unchanged keep their stored outputs. Everything else runs again:
failed, upstream-failed, skipped and interrupted tasks, attempts a dead runner left queued or
running, tasks new in the flow, and a succeeded task whose code changed, with its downstream cone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from rota.model.dag import Dag
from rota.model.states import RunState, TaskState
from rota.store.base import AttemptRecord, Change, NewAttempt, RunChange, RunRecord

_STALE = (TaskState.QUEUED, TaskState.RUNNING, TaskState.SENSING)


@dataclass
class ResumePlan:
    """The store writes a resume makes before driving the run, and the reason for each re-run."""

    changes: list[Change] = field(default_factory=list)
    new: list[NewAttempt] = field(default_factory=list)
    run_changes: list[RunChange] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)


def latest_attempts(records: Iterable[AttemptRecord]) -> dict[str, AttemptRecord]:
    """The latest attempt (highest try) of each task."""
    latest: dict[str, AttemptRecord] = {}
    for rec in records:
        prev = latest.get(rec.task_id)
        if prev is None or rec.try_number > prev.try_number:
            latest[rec.task_id] = rec
    return latest


def sweep_stale(run: RunRecord, latest: dict[str, AttemptRecord], now: datetime) -> ResumePlan:
    """Mark what a dead runner left queued or running as interrupted, and the run too."""
    plan = ResumePlan()
    for rec in latest.values():
        if rec.state in _STALE:
            plan.changes.append(Change(rec.id, rec.state, TaskState.INTERRUPTED, {}))
    if run.state is RunState.RUNNING:
        plan.run_changes.append(RunChange(run.run_id, RunState.RUNNING, RunState.INTERRUPTED, now))
    return plan


def _why(rec: AttemptRecord | None, code_hash: str) -> str | None:
    """Why the task of *rec* must run again, or None when it keeps its state."""
    if rec is None:
        return "new in the flow"
    if rec.state is TaskState.SCHEDULED:
        return None
    if rec.state is TaskState.SUCCESS:
        if rec.code_hash and rec.code_hash != code_hash:
            return f"code changed since its success in try {rec.try_number}"
        return None
    if rec.state in _STALE:
        return f"interrupted in try {rec.try_number} (its runner died)"
    return f"{rec.state.value} in try {rec.try_number}"


def plan_resume(
    run: RunRecord, dag: Dag, records: Iterable[AttemptRecord], now: datetime
) -> ResumePlan:
    """What resuming *run* with the current *dag* re-runs (see the module docstring)."""
    latest = latest_attempts(records)
    plan = sweep_stale(run, latest, now)
    changed: list[str] = []
    for tid in dag.order:
        why = _why(latest.get(tid), dag.tasks[tid].op.code_hash())
        if why is not None:
            plan.reasons[tid] = why
            if why.startswith("code changed"):
                changed.append(tid)
    for tid in changed:
        for down in _cone(dag, tid):
            plan.reasons.setdefault(down, f"downstream of {tid}, whose code changed")
    plan.reasons = {tid: plan.reasons[tid] for tid in dag.order if tid in plan.reasons}
    for tid in dag.order:
        rec = latest.get(tid)
        if tid not in plan.reasons:
            if rec is not None and rec.state is TaskState.SUCCESS:
                plan.kept.append(tid)
            continue
        spec = dag.tasks[tid]
        plan.new.append(
            NewAttempt(
                run.run_id,
                tid,
                (rec.try_number + 1) if rec is not None else 1,
                spec.op.kind,
                spec.op.code_hash(),
            )
        )
    return plan


def _cone(dag: Dag, start: str) -> list[str]:
    """Every task downstream of *start*, in topological order."""
    seen: set[str] = set()
    stack = list(dag.downstream(start))
    while stack:
        tid = stack.pop()
        if tid not in seen:
            seen.add(tid)
            stack.extend(dag.downstream(tid))
    return [tid for tid in dag.order if tid in seen]
