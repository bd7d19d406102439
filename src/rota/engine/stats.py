"""``rota stats``: a flow's history from the store, its retries from its definition, the maths.

The retries each task has are read from the flow as it is defined now (its code, loaded the way
``rota run`` loads it), not from the store, which does not record them: the prediction answers
"how often will the flow as it is now succeed, given how often its tasks failed".
"""

from __future__ import annotations

from rota.model.dag import Dag
from rota.model.reliability import RETRY_LIMIT, FlowEstimate, TaskPlan, estimate
from rota.store.base import Store

DEFAULT_LAST = 100
"""How many of a flow's last finished runs ``rota stats`` reads unless told."""


def task_plans(dag: Dag) -> dict[str, TaskPlan]:
    """Each task's retries (``max_attempts - 1``) and whether it is mapped, in graph order."""
    return {
        tid: TaskPlan(dag.tasks[tid].retry.max_attempts - 1, dag.tasks[tid].mapped)
        for tid in dag.order
    }


def flow_stats(
    store: Store, dag: Dag, *, last: int = DEFAULT_LAST, target: float, limit: int = RETRY_LIMIT
) -> FlowEstimate:
    """Estimate *dag*'s tasks and the flow from its last *last* finished runs in *store*."""
    history = store.flow_history(dag.name, last)
    return estimate(history, task_plans(dag), target=target, limit=limit)
