"""``rota stats``: a flow's history from the store, its retries from its definition, the maths.

The retries each task has are read from the flow as it is defined now (its code, loaded the way
``rota run`` loads it), not from the store, which does not record them: the prediction answers
"how often will the flow as it is now succeed, given how often its tasks failed".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rota.model.reliability import RETRY_LIMIT, FlowEstimate, TaskPlan, estimate

if TYPE_CHECKING:  # types only: `rota stats` offers DEFAULT_LAST before anything is loaded
    from rota.model.dag import Dag, ParamSpec
    from rota.store.base import Store

DEFAULT_LAST = 100
"""How many of a flow's last finished runs ``rota stats`` reads unless told."""


def build_params(
    run_id: str,
    specs: Sequence[ParamSpec],
    stored: Mapping[str, Any],
    given: Mapping[str, Any],
) -> dict[str, Any]:
    """The parameters to build the flow with: the newest run's (*stored*, of run *run_id*) that
    the flow still has and the store keeps, overridden by *given* (``-p``).

    A secret the store does not keep (:mod:`rota.model.secrets`) is not asked for: it takes the
    flow's default, or ``-p``; the flow's retries rarely depend on it.
    """
    from rota.model.secrets import run_params, unstored_params

    known = {spec.name for spec in specs}
    unstored = unstored_params(stored)
    kept = {k: v for k, v in stored.items() if k in known and k not in unstored}
    return {**run_params(run_id, kept, specs, {}, {}), **given}


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
