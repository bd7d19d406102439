"""The seed's reliability maths, from history: P(run succeeds) = Π (1 - pᵢ^(rᵢ+1)).

Each try of task i is taken to fail on its own, with probability pᵢ, and the task is tried up to
rᵢ + 1 times (its retries rᵢ = ``max_attempts - 1``). It fails only when every try fails, so it
succeeds with probability 1 - pᵢ^(rᵢ+1), and a run, which needs every task, succeeds with the
product over the tasks. A mapped task is one task per instance, each with its own tries: with mᵢ
instances per run its factor is (1 - pᵢ^(rᵢ+1))^mᵢ (mᵢ = 1 for a task that is not mapped).

pᵢ is estimated as p̂ᵢ = failed tries / tries (the maximum-likelihood estimate: each try is one
Bernoulli trial, whatever rule stopped the trying), with a Wilson 95% interval.

The retries a target needs are chosen greedily: starting from no retries, one retry at a time goes
to the task whose factor it raises most (in log P), until the product reaches the target. Each
task's log-factor is concave in its retries (every further retry gains less than the one before),
so this marginal allocation gives, for every total number of retries, the largest P any allocation
of that total can reach (Fox, 1966). Stopping at the first total that reaches the target therefore
spends the fewest retries in all, and among allocations of that total none reaches a higher P.
Ties go to the task listed first. Pure values: no I/O.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from rota.model.states import TaskState

Z95: Final = 1.959963984540054
"""The standard normal quantile of 0.975: a two-sided 95% interval."""

RETRY_LIMIT: Final = 100
"""The most retries a recommendation gives one task; a target that needs more is unreachable."""

TRIED: Final = frozenset({TaskState.SUCCESS, TaskState.FAILED, TaskState.UP_FOR_RETRY})
"""Attempt states that are one try with an outcome. ``cached`` ran nothing; ``skipped`` and
``upstream_failed`` neither succeeded nor failed at their work; ``interrupted`` and the unfinished
states have no outcome (yet)."""

FAILED_TRIES: Final = frozenset({TaskState.FAILED, TaskState.UP_FOR_RETRY})
"""Attempt states that are a failed try (``up_for_retry``: failed, and tried again)."""


@dataclass(frozen=True, slots=True)
class Interval:
    """A closed interval ``[low, high]`` of probabilities."""

    low: float
    high: float

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int | float) and self.low <= value <= self.high


def wilson(hits: int, trials: int, z: float = Z95) -> Interval:
    """The Wilson score interval for a proportion of *hits* in *trials* (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or *trials*
    hits. With no trials it is the whole of [0, 1].

    Raises:
        ValueError: *hits* is not within ``[0, trials]``.
    """
    if not 0 <= hits <= trials:
        raise ValueError(f"hits must be within [0, {trials}], got {hits}")
    if trials == 0:
        return Interval(0.0, 1.0)
    z2 = z * z
    centre = (hits + z2 / 2) / (trials + z2)
    half = z * math.sqrt(hits * (trials - hits) / trials + z2 / 4) / (trials + z2)
    low = 0.0 if hits == 0 else max(0.0, centre - half)
    high = 1.0 if hits == trials else min(1.0, centre + half)
    return Interval(low, high)


@dataclass(frozen=True, slots=True)
class TaskRisk:
    """One task as the formula sees it: failure probability per try, retries, instances per run."""

    task_id: str
    p: float
    retries: int
    instances: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"{self.task_id}: p must be within [0, 1], got {self.p}")
        if self.retries < 0:
            raise ValueError(f"{self.task_id}: retries must be >= 0, got {self.retries}")
        if not self.instances >= 0.0:
            raise ValueError(f"{self.task_id}: instances must be >= 0, got {self.instances}")


def task_success(p: float, retries: int, instances: float = 1.0) -> float:
    """P(the task succeeds) = (1 - p^(retries+1))^instances."""
    return float((1.0 - p ** (retries + 1)) ** instances)


def flow_success(tasks: Iterable[TaskRisk]) -> float:
    """P(a run succeeds) = Π (1 - pᵢ^(rᵢ+1))^mᵢ over *tasks* (1.0 for none)."""
    return math.prod(task_success(t.p, t.retries, t.instances) for t in tasks)


def _gain(task: TaskRisk, retries: int) -> float:
    """How much one more retry (from *retries*) raises the task's log-factor; >= 0."""
    now = 1.0 - task.p ** (retries + 1)
    if now <= 0.0:  # p == 1: no number of retries helps
        return 0.0
    return task.instances * (math.log1p(-(task.p ** (retries + 2))) - math.log(now))


def minimal_retries(
    tasks: Sequence[TaskRisk], target: float, limit: int = RETRY_LIMIT
) -> dict[str, int] | None:
    """The fewest retries in all that bring :func:`flow_success` to *target* (module docstring).

    The tasks' own ``retries`` are ignored: the allocation starts from none.

    Args:
        tasks: the tasks, in the order that breaks ties.
        target: the P(run succeeds) to reach, in (0, 1].
        limit: the most retries one task may get.

    Returns:
        Retries per task id, or None when *target* cannot be reached with at most *limit*
        retries per task (e.g. a task that failed every try).

    Raises:
        ValueError: *target* is not in (0, 1], or *limit* is negative.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target must be within (0, 1], got {target}")
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    retries = {t.task_id: 0 for t in tasks}

    def success() -> float:
        return flow_success(
            TaskRisk(t.task_id, t.p, retries[t.task_id], t.instances) for t in tasks
        )

    ceiling = [TaskRisk(t.task_id, t.p, limit, t.instances) for t in tasks]
    if flow_success(ceiling) < target:
        return None
    heap = [(-_gain(t, 0), n, t) for n, t in enumerate(tasks) if limit > 0]
    heapq.heapify(heap)
    while success() < target and heap:
        _, n, task = heapq.heappop(heap)
        retries[task.task_id] += 1
        if retries[task.task_id] < limit:
            heapq.heappush(heap, (-_gain(task, retries[task.task_id]), n, task))
    return retries


@dataclass(frozen=True, slots=True)
class TaskHistory:
    """What the store recorded for one task over a window of finished runs.

    Attributes:
        attempts, failures: tries of the task itself (map index -1) in :data:`TRIED`, and of
            those in :data:`FAILED_TRIES`.
        instance_attempts, instance_failures: the same, over the instances of a mapped task.
        instances: how many instances the task had, summed over the runs.
        expanded_runs: runs in which the task had instances, or its own row recorded an output
            length: for a mapped task, the runs in which it fanned out (into zero instances
            too), which :func:`estimate` divides *instances* by. Unused for other tasks.
    """

    task_id: str
    attempts: int = 0
    failures: int = 0
    instance_attempts: int = 0
    instance_failures: int = 0
    instances: int = 0
    expanded_runs: int = 0


@dataclass(frozen=True, slots=True)
class FlowHistory:
    """A flow's last finished runs (``success`` or ``failed``) and what its tasks did in them."""

    flow: str
    runs: int
    succeeded: int
    tasks: Mapping[str, TaskHistory] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TaskPlan:
    """What the flow's definition says of a task: its retries, and whether it is mapped."""

    retries: int
    mapped: bool = False


@dataclass(frozen=True, slots=True)
class TaskEstimate:
    """One task's row of ``rota stats``.

    Attributes:
        attempts, failures: the tries counted (a mapped task's are its instances' tries).
        p: p̂ = failures / attempts; None when the task made no try in the window.
        interval: the Wilson 95% interval of p (None with p).
        retries: the retries the flow gives the task now.
        instances: instances per run (1 for a task that is not mapped).
        success: P(the task succeeds) with its retries (None with p).
        needed: the retries the recommendation gives it (None: no recommendation).
    """

    task_id: str
    attempts: int
    failures: int
    p: float | None
    interval: Interval | None
    retries: int
    mapped: bool
    instances: float
    success: float | None
    needed: int | None = None


@dataclass(frozen=True, slots=True)
class FlowEstimate:
    """What ``rota stats`` reports for a flow: tasks, prediction, observation, recommendation.

    Attributes:
        predicted: Π over the measured tasks of (1 - p̂ᵢ^(rᵢ+1))^mᵢ, with their retries.
        without_retries: the same product with no retries, Π (1 - p̂ᵢ)^mᵢ.
        observed: succeeded / runs (None without runs), with its Wilson interval.
        needed_success: the prediction with the recommended retries (None: unreachable).
        unmeasured: tasks of the flow with no try in the window, left out of the products.
    """

    flow: str
    runs: int
    succeeded: int
    tasks: tuple[TaskEstimate, ...]
    predicted: float
    without_retries: float
    observed: float | None
    observed_interval: Interval
    target: float
    needed_success: float | None
    limit: int = RETRY_LIMIT

    @property
    def unmeasured(self) -> tuple[str, ...]:
        return tuple(t.task_id for t in self.tasks if t.p is None)


def _estimate_task(history: TaskHistory, plan: TaskPlan) -> TaskEstimate:
    if plan.mapped:
        attempts, failures = history.instance_attempts, history.instance_failures
        runs = history.expanded_runs
        instances = history.instances / runs if runs else 1.0
    else:
        attempts, failures, instances = history.attempts, history.failures, 1.0
    p = failures / attempts if attempts else None
    return TaskEstimate(
        task_id=history.task_id,
        attempts=attempts,
        failures=failures,
        p=p,
        interval=wilson(failures, attempts) if p is not None else None,
        retries=plan.retries,
        mapped=plan.mapped,
        instances=instances,
        success=task_success(p, plan.retries, instances) if p is not None else None,
    )


def estimate(
    history: FlowHistory,
    plans: Mapping[str, TaskPlan],
    *,
    target: float,
    limit: int = RETRY_LIMIT,
) -> FlowEstimate:
    """Estimate each task of *plans* (the flow as defined now) from *history*, and the flow.

    Tasks the history has but the flow no longer defines are left out; tasks of the flow with no
    try in the history are reported without an estimate and left out of the products.

    Raises:
        ValueError: *target* is not in (0, 1].
    """
    tasks = [
        _estimate_task(history.tasks.get(tid) or TaskHistory(tid), plan)
        for tid, plan in plans.items()
    ]
    risks = [TaskRisk(t.task_id, t.p, t.retries, t.instances) for t in tasks if t.p is not None]
    needed = minimal_retries(risks, target, limit)
    needed_success = None
    if needed is not None:
        tasks = [t if t.p is None else replace(t, needed=needed[t.task_id]) for t in tasks]
        chosen = [TaskRisk(r.task_id, r.p, needed[r.task_id], r.instances) for r in risks]
        needed_success = flow_success(chosen)
    return FlowEstimate(
        flow=history.flow,
        runs=history.runs,
        succeeded=history.succeeded,
        tasks=tuple(tasks),
        predicted=flow_success(risks),
        without_retries=flow_success(TaskRisk(r.task_id, r.p, 0, r.instances) for r in risks),
        observed=history.succeeded / history.runs if history.runs else None,
        observed_interval=wilson(history.succeeded, history.runs),
        target=target,
        needed_success=needed_success,
        limit=limit,
    )
