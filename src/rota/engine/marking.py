"""Setting a task's state by hand: Airflow's "mark success" and "mark failed".

A mark never changes an attempt that has ended (ended attempts are immutable): it adds an
attempt made already ended in the chosen state, without running. A task marked success stored
no output, so its downstream tasks receive None from it, as an Airflow task marked success has
no XCom. Then, as Airflow's ``set_task_instance_state`` does for either state, the failed and
upstream-failed tasks downstream of the named tasks are cleared and, when there are any, the run
is queued, so that ``rota resume`` runs them; otherwise the run's state is left as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from rota.engine.lease import RunnerId, acquire
from rota.engine.resume import cleared_attempts, latest_by_key, sweep_stale
from rota.engine.runner import queue_again, task_cones
from rota.errors import UserError
from rota.model.dag import Dag
from rota.model.states import FAILURES, TaskState
from rota.store.base import AttemptRecord, NewAttempt, Store

MARKABLE = (TaskState.SUCCESS, TaskState.FAILED)


@dataclass(frozen=True, slots=True)
class Marks:
    """What a mark did: the tasks given a marked attempt and those cleared below them (both in
    topological order)."""

    marked: list[str]
    cleared: list[str]


class CannotMark(UserError):
    """A mark that cannot be made: a mapped task, or a state no mark sets."""


def mark_tasks(
    store: Store,
    run_id: str,
    dag: Dag,
    task_ids: Iterable[str],
    state: TaskState,
    *,
    now: datetime,
    downstream: bool = False,
    upstream: bool = False,
    stale_after: timedelta = timedelta(seconds=30),
) -> Marks:
    """Mark *task_ids* (and their cones) of *run_id* as *state* (success or failed).

    Returns:
        The tasks marked (those already in *state* are left as they are, and so are those
        cleared instead) and the tasks cleared below them.

    Raises:
        CannotMark: *state* is not success or failed, or a chosen task is mapped.
        NotFound: a task id is not in the flow.
        RunBusy: another live runner drives the run.
    """
    if state not in MARKABLE:
        raise CannotMark(f"a task can be marked success or failed, not {state.value}")
    named = list(task_ids)
    chosen = task_cones(dag, named, downstream=downstream, upstream=upstream)
    me = RunnerId.current()
    taken = acquire(store, run_id, me, now, stale_after)
    try:
        records = store.attempts(run_id)
        latest = latest_by_key(records)
        _refuse_mapped(chosen, latest)
        plan = sweep_stale(taken.run, latest, now)  # what a dead runner left
        after = {t: state if t in chosen else _state_of(latest, t) for t in dag.order}
        cleared = _failed_below(dag, named, after)
        marked = [t for t in chosen if _state_of(latest, t) is not state and t not in cleared]
        plan.new = [_marked(run_id, dag, t, latest.get((t, -1)), state, now) for t in marked]
        if cleared:
            plan.new += cleared_attempts(run_id, dag, cleared, records, now)
            queue_again(plan, taken.run, now)
        store.add_attempts(plan.changes, plan.new, plan.run_changes, at=now)
    finally:
        store.release(run_id, str(me))
    return Marks(marked, cleared)


def _refuse_mapped(chosen: Iterable[str], latest: Mapping[tuple[str, int], AttemptRecord]) -> None:
    mapped = {tid for tid, index in latest if index >= 0}
    for tid in chosen:
        if tid in mapped:
            raise CannotMark(
                f"task {tid!r} is mapped: marking a mapped task is not supported; "
                f"clear it (rota clear --task '{tid}[N]') instead"
            )


def _state_of(latest: Mapping[tuple[str, int], AttemptRecord], tid: str) -> TaskState | None:
    rec = latest.get((tid, -1))
    return None if rec is None else rec.state


def _marked(
    run_id: str, dag: Dag, tid: str, prev: AttemptRecord | None, state: TaskState, now: datetime
) -> NewAttempt:
    op = dag.tasks[tid].op
    tries = 0 if prev is None else prev.try_number
    return NewAttempt(
        run_id, tid, tries + 1, op.kind, op.code_hash(), marked=state, marked_at=now
    )  # fmt: skip


def _failed_below(dag: Dag, named: list[str], after: Mapping[str, TaskState | None]) -> list[str]:
    """The failed and upstream-failed tasks downstream of *named* once the marks are made,
    *named* themselves left out: Airflow clears them after setting a state, so that the run can
    go on (which is why a task marked failed with ``--downstream`` has its downstream cleared)."""
    below = task_cones(dag, named, downstream=True, upstream=False)
    return [t for t in below if t not in named and after[t] in FAILURES]
