"""Priority weights: which ready task goes first, as Airflow's ``priority_weight`` and
``weight_rule`` decide it.

A task's effective weight is its own ``priority_weight`` plus, by its rule:

- ``downstream`` (the default): the weights of every task downstream of it, transitively, so a
  task that much depends on runs first;
- ``upstream``: the weights of every task upstream of it, transitively, so a run that started
  finishes first;
- ``absolute``: nothing; the weight as given.

Like Airflow's ``db_safe_priority``, the result is clamped to a 32-bit integer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from rota.errors import DefinitionError

if TYPE_CHECKING:
    from rota.model.dag import Dag

WEIGHT_MIN: Final = -(2**31)
WEIGHT_MAX: Final = 2**31 - 1


class WeightRule(StrEnum):
    """How a task's effective priority weight is computed (Airflow's ``WeightRule``)."""

    DOWNSTREAM = "downstream"
    UPSTREAM = "upstream"
    ABSOLUTE = "absolute"


@dataclass(frozen=True, slots=True)
class Priority:
    """A task's ``priority_weight`` and ``weight_rule``."""

    weight: int = 1
    rule: WeightRule = WeightRule.DOWNSTREAM

    @classmethod
    def of(cls, task_id: str, weight: object, rule: object) -> Priority:
        """The validated priority of task *task_id*.

        Raises:
            DefinitionError: the weight is not an int in 32 bits, or the rule is unknown.
        """
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise DefinitionError(
                f"task {task_id!r}: priority_weight must be an int, got {weight!r}"
            )
        if not WEIGHT_MIN <= weight <= WEIGHT_MAX:
            raise DefinitionError(
                f"task {task_id!r}: priority_weight {weight} is outside {WEIGHT_MIN}..{WEIGHT_MAX}"
            )
        try:
            return cls(weight, WeightRule(str(rule)))
        except ValueError:
            known = ", ".join(r.value for r in WeightRule)
            raise DefinitionError(
                f"task {task_id!r}: unknown weight_rule {rule!r} (known: {known})"
            ) from None


DEFAULT_PRIORITY: Final = Priority()


def clamp(weight: int) -> int:
    """*weight* within a 32-bit integer."""
    return max(WEIGHT_MIN, min(WEIGHT_MAX, weight))


def effective_weights(dag: Dag) -> dict[str, int]:
    """Each task's effective priority weight (see the module docstring).

    Relatives are collected as bit sets, one pass in reverse topological order for the
    downstream sets and one in order for the upstream ones (each only if a task's rule needs
    it), and summed per distinct weight by counting bits. A task's set is weighed as soon as it
    is complete and dropped once the last task that builds on it has, so only the sets of the
    graph's frontier are held at once (a 100,000-task graph of 1,000 layers holds about 200 of
    them, not 100,000).
    """
    order = dag.order
    weights = {tid: dag.tasks[tid].priority.weight for tid in order}
    position = {tid: i for i, tid in enumerate(order)}  # a task's bit (not 1 << i: n^2 bits)
    masks = _masks_by_weight(order, weights)
    by_rule: dict[WeightRule, set[str]] = {rule: set() for rule in WeightRule}
    for tid in order:
        by_rule[dag.tasks[tid].priority.rule].add(tid)
    out = {tid: weights[tid] for tid in by_rule[WeightRule.ABSOLUTE]}
    for rule in (WeightRule.DOWNSTREAM, WeightRule.UPSTREAM):
        if by_rule[rule]:
            for tid, members in _relatives(dag, position, downstream=rule is WeightRule.DOWNSTREAM):
                if tid in by_rule[rule]:
                    out[tid] = clamp(weights[tid] + _weigh(members, masks))
    return out


def _relatives(
    dag: Dag, position: Mapping[str, int], *, downstream: bool
) -> Iterator[tuple[str, int]]:
    """Per task, the bit set of the tasks downstream (or upstream) of it, transitively. Each is
    kept with the task's own bit while tasks that build on it are left, then forgotten."""
    seen: dict[str, int] = {}
    left: dict[str, int] = {}  # per task: how many tasks have yet to take its set in
    for tid in reversed(dag.order) if downstream else dag.order:
        near = dag.downstream(tid) if downstream else dag.tasks[tid].upstream
        found = 0
        for other in near:
            found |= seen[other]  # the other task and its relatives
            left[other] -= 1
            if not left[other]:
                del seen[other], left[other]
        yield tid, found
        takers = len(dag.tasks[tid].upstream) if downstream else len(dag.downstream(tid))
        if takers:
            seen[tid] = found | (1 << position[tid])
            left[tid] = takers


def _masks_by_weight(order: Sequence[str], weights: Mapping[str, int]) -> dict[int, int]:
    """Per distinct weight, the bit set of the tasks (by their place in *order*) that have it."""
    arrays: dict[int, bytearray] = {}
    size = len(order) // 8 + 1
    for i, tid in enumerate(order):
        array = arrays.setdefault(weights[tid], bytearray(size))
        array[i >> 3] |= 1 << (i & 7)
    return {w: int.from_bytes(array, "little") for w, array in arrays.items()}


def _weigh(members: int, masks: Mapping[int, int]) -> int:
    """The sum of the weights of the tasks in bit set *members*."""
    if not members:
        return 0
    if len(masks) == 1:  # one weight for all (the default): no need to split the set
        ((weight, _),) = masks.items()
        return weight * members.bit_count()
    return sum(w * (members & mask).bit_count() for w, mask in masks.items() if w)
