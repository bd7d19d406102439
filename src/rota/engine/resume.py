"""Planning a resume: which tasks of a run to run again, and why.

Succeeded tasks whose code is unchanged keep their stored outputs, and tasks a kept branch (or
short-circuit) skipped stay skipped. Everything else runs again: failed, upstream-failed, skipped
and interrupted tasks, attempts a dead runner left queued or running, tasks new in the flow, and a
succeeded task whose code changed, with its downstream cone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rota.model.branching import BRANCH_SKIP
from rota.model.dag import REQUIRED, Dag, ParamSpec, TaskSpec
from rota.model.secrets import display_params, run_params, stored_params, unstored_params
from rota.model.states import SUCCEEDED, RunState, TaskState
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


@dataclass(frozen=True, slots=True)
class ParamChange:
    """The parameters a resume runs with when ``rota resume -p`` gives some of them.

    Attributes:
        values: what to build the flow with (the stored values, secrets given again, changes).
        stored: the run's parameters in the form the store keeps, with the changes.
        changes: name -> ``{"from": old, "to": new}`` for each parameter whose value changed,
            secrets masked: what is recorded on the run.
    """

    values: dict[str, Any]
    stored: dict[str, Any]
    changes: dict[str, dict[str, Any]]


def resume_params(
    run: RunRecord,
    specs: Sequence[ParamSpec],
    given: Mapping[str, Any],
    environ: Mapping[str, str],
    defaults: Mapping[str, Any],
) -> ParamChange:
    """The parameters to resume *run* with, given *given* (``-p``).

    A parameter the store does not keep (a secret) given again is used and not recorded, as
    before; any other parameter given is a change: the tasks that run again see the new value,
    and the change is recorded on the run (the tasks a resume keeps keep their outputs).

    Raises:
        ParameterError: a secret the store does not keep cannot be found (see ``run_params``).
    """
    unstored = unstored_params(run.params)
    again = {k: v for k, v in given.items() if k in unstored}
    values = run_params(run.run_id, run.params, specs, again, environ)
    by_name = {spec.name: spec for spec in specs}
    stored = dict(run.params)
    changes: dict[str, dict[str, Any]] = {}
    for name, value in given.items():
        if name in unstored:
            continue
        default = by_name[name].default if name in by_name else None
        old = values.get(name, None if default is REQUIRED else default)
        if old == value and type(old) is type(value):
            continue
        values[name] = value
        stored[name] = stored_params({name: value}, defaults)[name]
        shown_old, shown_new = (
            display_params({name: old})[name],
            display_params({name: value})[name],
        )
        changes[name] = {"from": shown_old, "to": shown_new}
    return ParamChange(values, stored, changes)


def latest_attempts(records: Iterable[AttemptRecord]) -> dict[str, AttemptRecord]:
    """The latest attempt (highest try) of each task (of a mapped task as a whole)."""
    return {tid: rec for (tid, index), rec in latest_by_key(records).items() if index < 0}


def latest_by_key(records: Iterable[AttemptRecord]) -> dict[tuple[str, int], AttemptRecord]:
    """The latest attempt of each (task, map index): mapped instances have their own."""
    latest: dict[tuple[str, int], AttemptRecord] = {}
    for rec in records:
        key = (rec.task_id, rec.map_index)
        prev = latest.get(key)
        if prev is None or rec.try_number > prev.try_number:
            latest[key] = rec
    return latest


def counted_tries(records: Iterable[AttemptRecord]) -> dict[tuple[str, int], int]:
    """The tries a retry policy counts, per (task, map index): attempts that started, since the
    task was last cleared (``rota clear`` gives a full retry budget again, as Airflow does; a
    plain resume keeps counting)."""
    records = list(records)
    budget_from: dict[tuple[str, int], int] = {}
    for rec in records:
        key = (rec.task_id, rec.map_index)
        if rec.cleared_at is not None and rec.try_number > budget_from.get(key, 0):
            budget_from[key] = rec.try_number
    tries: dict[tuple[str, int], int] = {}
    for rec in records:
        key = (rec.task_id, rec.map_index)
        if rec.started_at is not None and rec.try_number >= budget_from.get(key, 0):
            tries[key] = tries.get(key, 0) + 1
    return tries


def sweep_stale(run: RunRecord, latest: Mapping[Any, AttemptRecord], now: datetime) -> ResumePlan:
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
        return "not run yet"
    if rec.state in SUCCEEDED:  # a cache hit is a success too: its output is stored
        if rec.code_hash and rec.code_hash != code_hash:
            return f"code changed since its success in try {rec.try_number}"
        return None
    if rec.state in _STALE:
        return f"interrupted in try {rec.try_number} (its runner died)"
    if rec.state is TaskState.SKIPPED and rec.error_type == BRANCH_SKIP:
        return None  # a branch's choice stands while the branch's success is kept (as Airflow)
    return f"{rec.state.value} in try {rec.try_number}"


def plan_resume(
    run: RunRecord, dag: Dag, records: Iterable[AttemptRecord], now: datetime
) -> ResumePlan:
    """What resuming *run* with the current *dag* re-runs (see the module docstring)."""
    by_key = latest_by_key(records)
    latest = {tid: rec for (tid, index), rec in by_key.items() if index < 0}
    plan = sweep_stale(run, by_key, now)
    plan.reasons = _reasons(dag, latest)
    instances = instances_by_task(by_key)
    for tid in dag.order:
        rec = latest.get(tid)
        if tid not in plan.reasons:
            if rec is not None and rec.state in SUCCEEDED:
                plan.kept.append(tid)
            continue
        spec = dag.tasks[tid]
        if rec is None or rec.state is not TaskState.SCHEDULED:
            plan.new.append(_again(run.run_id, spec, tid, -1, rec))
        code_changed = plan.reasons[tid].startswith(("code changed", "downstream of"))
        for index, inst in instances.get(tid, ()):
            if inst.state is TaskState.SCHEDULED:
                continue
            if inst.state not in SUCCEEDED or code_changed:
                plan.new.append(_again(run.run_id, spec, tid, index, inst))
    return plan


def _reasons(dag: Dag, latest: Mapping[str, AttemptRecord]) -> dict[str, str]:
    """Why each task that must run again does, in graph order."""
    reasons: dict[str, str] = {}
    changed: list[str] = []
    for tid in dag.order:
        why = _why(latest.get(tid), dag.tasks[tid].op.code_hash())
        if why is not None:
            reasons[tid] = why
            if why.startswith("code changed"):
                changed.append(tid)
    for down, tid in _first_changed_above(dag, changed).items():
        reasons.setdefault(down, f"downstream of {tid}, whose code changed")
    return {tid: reasons[tid] for tid in dag.order if tid in reasons}


def instances_by_task(
    by_key: Mapping[tuple[str, int], AttemptRecord],
) -> dict[str, list[tuple[int, AttemptRecord]]]:
    """The mapped instances' latest attempts, per task (in the order of *by_key*): one pass,
    so that looking a task's instances up costs O(its instances), not O(run size)."""
    out: dict[str, list[tuple[int, AttemptRecord]]] = {}
    for (tid, index), rec in by_key.items():
        if index >= 0:
            out.setdefault(tid, []).append((index, rec))
    return out


def _first_changed_above(dag: Dag, changed: Sequence[str]) -> dict[str, str]:
    """For each task downstream of a task of *changed* (in graph order), the first of those it
    is downstream of: one pass over the edges in topological order, not one walk per task."""
    rank = {tid: i for i, tid in enumerate(changed)}
    none = len(changed)
    above: dict[str, int] = {}  # task -> rank of the first changed task upstream of it
    for tid in dag.order:
        here = min(rank.get(tid, none), above.get(tid, none))
        if here == none:
            continue
        for down in dag.downstream(tid):
            if here < above.get(down, none):
                above[down] = here
    return {tid: changed[above[tid]] for tid in dag.order if tid in above}


def _again(
    run_id: str,
    spec: TaskSpec,
    tid: str,
    index: int,
    rec: AttemptRecord | None,
    *,
    cleared_at: datetime | None = None,
) -> NewAttempt:
    try_number = (rec.try_number + 1) if rec is not None else 1
    return NewAttempt(
        run_id, tid, try_number, spec.op.kind, spec.op.code_hash(), index, cleared_at=cleared_at
    )


def cleared_attempts(
    run_id: str,
    dag: Dag,
    chosen: Iterable[str],
    records: Iterable[AttemptRecord],
    now: datetime,
    instances: Mapping[str, Iterable[int]] | None = None,
) -> list[NewAttempt]:
    """The attempts ``rota clear`` makes for the *chosen* tasks: one per task (and per mapped
    instance that did not succeed, or that *instances* names) that is not waiting to run
    already, each marked cleared at *now* so that it starts a full retry budget."""
    by_key = latest_by_key(records)
    mapped = instances_by_task(by_key)
    new: list[NewAttempt] = []
    for tid in chosen:
        spec = dag.tasks[tid]
        named = set((instances or {}).get(tid, ()))
        rec = by_key.get((tid, -1))
        if rec is None or rec.state is not TaskState.SCHEDULED:
            new.append(_again(run_id, spec, tid, -1, rec, cleared_at=now))
        for index, inst in mapped.get(tid, ()):
            if inst.state is TaskState.SCHEDULED:
                continue
            if inst.state not in _KEPT_INSTANCE or index in named:
                new.append(_again(run_id, spec, tid, index, inst, cleared_at=now))
    return new


_KEPT_INSTANCE = frozenset({TaskState.SCHEDULED, *SUCCEEDED})
"""States of a mapped instance that clearing its task leaves alone (a resume reuses a success)."""
