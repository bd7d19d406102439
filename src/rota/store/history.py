"""SQL for ``rota stats``: what a flow's tasks did over its last finished runs.

Every count is made by the database (GROUP BY), so reading a long history costs a few queries and
no attempt rows are carried to Python. Which attempt states count as tries, and as failed ones,
is the model's decision (:data:`~rota.model.reliability.TRIED`,
:data:`~rota.model.reliability.FAILED_TRIES`); this module only counts them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, case, distinct, func, or_, select

from rota.model.reliability import FAILED_TRIES, TRIED, FlowHistory, TaskHistory
from rota.model.states import RunState
from rota.store.tables import runs, task_attempts

_r = runs.c
_ta = task_attempts.c

FINISHED: tuple[str, ...] = (RunState.SUCCESS.value, RunState.FAILED.value)
"""The run states a window holds: a run that is queued, running or interrupted has no outcome."""


def _window(flow: str, last: int) -> Any:
    """The last *last* finished runs of *flow* (newest created first), as a subquery."""
    return (
        select(_r.run_id, _r.state)
        .where(_r.flow == flow, _r.state.in_(FINISHED))
        .order_by(_r.created_at.desc(), _r.run_id.desc())
        .limit(last)
        .subquery("window")
    )


def _count(states: frozenset[Any]) -> Any:
    return func.coalesce(func.sum(case((_ta.state.in_([s.value for s in states]), 1), else_=0)), 0)


def _tries(window: Any) -> Select[Any]:
    """Tries and failed tries per task, split into the task's own rows and its instances'."""
    instance = case((_ta.map_index >= 0, 1), else_=0)
    return (
        select(_ta.task_id, instance.label("instance"), _count(TRIED), _count(FAILED_TRIES))
        .where(_ta.run_id.in_(select(window.c.run_id)))
        .group_by(_ta.task_id, instance)
    )


def _instances(window: Any) -> Select[Any]:
    """Instances per mapped task: distinct (run, map index) pairs, over every try."""
    pairs = (
        select(_ta.task_id, _ta.run_id, _ta.map_index)
        .where(_ta.run_id.in_(select(window.c.run_id)), _ta.map_index >= 0)
        .distinct()
        .subquery("pairs")
    )
    return select(pairs.c.task_id, func.count()).group_by(pairs.c.task_id)


def _expanded(window: Any) -> Select[Any]:
    """Runs in which each task fanned out: it has instances, or it ended with a known count
    (``output_length``, set on a mapped task's own row, is 0 for an empty list)."""
    fanned = or_(_ta.map_index >= 0, _ta.output_length.is_not(None))
    return (
        select(_ta.task_id, func.count(distinct(_ta.run_id)))
        .where(_ta.run_id.in_(select(window.c.run_id)), fanned)
        .group_by(_ta.task_id)
    )


def flow_history(conn: Connection, flow: str, last: int) -> FlowHistory:
    """What the tasks of *flow* did in its last *last* finished runs.

    Raises:
        ValueError: *last* is not positive.
    """
    if last < 1:
        raise ValueError(f"last must be >= 1, got {last}")
    window = _window(flow, last)
    succeeded = func.coalesce(func.sum(case((window.c.state == RunState.SUCCESS.value, 1))), 0)
    total, ok = conn.execute(select(func.count(), succeeded).select_from(window)).one()
    fields: dict[str, dict[str, int]] = {}
    for task_id, instance, tried, failed in conn.execute(_tries(window)):
        names = ("instance_attempts", "instance_failures") if instance else ("attempts", "failures")
        fields.setdefault(task_id, {}).update({names[0]: int(tried), names[1]: int(failed)})
    for task_id, count in conn.execute(_instances(window)):
        fields.setdefault(task_id, {})["instances"] = int(count)
    for task_id, count in conn.execute(_expanded(window)):
        fields.setdefault(task_id, {})["expanded_runs"] = int(count)
    tasks = {tid: TaskHistory(tid, **values) for tid, values in sorted(fields.items())}
    return FlowHistory(flow, int(total), int(ok), tasks)
