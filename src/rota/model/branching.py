"""Branching and short-circuiting: which tasks a branch's or a short-circuit's result skips.

Rota follows Airflow here. A branch task (Airflow's ``BranchPythonOperator`` / ``@task.branch``)
returns the id, or a list of ids, of direct downstream tasks to follow; the other direct
downstreams are skipped (``SkipMixin.skip_all_except``), except one that is also downstream of a
followed task (the "join" right after the branch runs as its trigger rule says). A short-circuit
task (``ShortCircuitOperator`` / ``@task.short_circuit``) whose result is falsy skips every task
downstream of it, whatever their trigger rules (``ignore_downstream_trigger_rules=True``), or only
its direct downstreams, leaving the rest to their rules (False). Skips then propagate by the
trigger rules (:mod:`rota.model.policies`).

Pure values and functions: the operators make a :class:`Chosen`, the attempt runner turns it into
the outcome's :class:`Choice`, and the engine asks :func:`skipped_by` what to skip.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rota.errors import BranchError
from rota.model.dag import Dag

BRANCH_SKIP: Final = "BranchSkip"
"""The ``error_type`` kept on an attempt skipped by a branch's or short-circuit's choice (its
``error_message`` says which task chose). A resume keeps such a skip while the choice stands."""


@dataclass(frozen=True, slots=True)
class Choice:
    """What a branch or short-circuit task decided about the tasks after it.

    Attributes:
        follow: the direct downstream ids a branch chose (empty: none, all are skipped).
        short_circuit: the result of a short-circuit task, which was falsy.
        everything: with ``short_circuit``, skip every task downstream, not only direct ones.
    """

    follow: tuple[str, ...] = ()
    short_circuit: bool = False
    everything: bool = True


@dataclass(frozen=True, slots=True)
class Chosen:
    """What a branch or short-circuit operator returns: the task's output and its choice (None:
    a short-circuit whose result was truthy, which skips nothing)."""

    value: Any
    choice: Choice | None


def branch_ids(value: object, downstream: Sequence[str], task_id: str) -> tuple[str, ...]:
    """The ids a branch function's return *value* follows: a task id, a list (or tuple, set) of
    ids, or None for none.

    Raises:
        BranchError: *value* is of another type, or names a task that is not a direct downstream
            of *task_id* (the message lists the valid ids).
    """
    if value is None:
        return ()
    items: Iterable[object] = (value,) if isinstance(value, str) else _iterable(value, task_id)
    ids: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise BranchError(
                f"branch task {task_id!r} returned {type(item).__name__} {item!r} among its "
                "choices; return task ids (strings)"
            )
        ids.append(item)
    unknown = sorted(set(ids) - set(downstream))
    if unknown:
        valid = ", ".join(repr(d) for d in downstream) or "none: it has no downstream tasks"
        raise BranchError(
            f"branch task {task_id!r} chose {', '.join(repr(u) for u in unknown)}, not among "
            f"its direct downstream tasks (valid ids: {valid})"
        )
    return tuple(dict.fromkeys(ids))


def _iterable(value: object, task_id: str) -> Iterable[object]:
    if isinstance(value, list | tuple | set | frozenset):
        return sorted(value, key=str) if isinstance(value, set | frozenset) else value
    raise BranchError(
        f"branch task {task_id!r} returned {type(value).__name__} {value!r}; return a task id, "
        "a list of task ids, or None"
    )


def skipped_by(dag: Dag, task_id: str, choice: Choice) -> list[str]:
    """The tasks *choice*, made by *task_id*, skips, in topological order."""
    direct = dag.downstream(task_id)
    if choice.short_circuit:
        chosen = descendants(dag, direct) if choice.everything else set(direct)
    else:
        keep = descendants(dag, choice.follow) | set(choice.follow)
        chosen = {d for d in direct if d not in keep}
    return [tid for tid in dag.order if tid in chosen]


def descendants(dag: Dag, starts: Iterable[str]) -> set[str]:
    """*starts* and every task downstream of them."""
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        tid = stack.pop()
        if tid not in seen:
            seen.add(tid)
            stack.extend(dag.downstream(tid))
    return seen


def skip_reason(task_id: str, choice: Choice) -> str:
    """Why a task *choice* skips is skipped, in words."""
    if choice.short_circuit:
        scope = "every task downstream" if choice.everything else "its direct downstreams"
        return f"short-circuit task {task_id!r} returned a falsy value, which skips {scope}"
    followed = ", ".join(repr(f) for f in choice.follow) or "no task"
    return f"not chosen by branch task {task_id!r} (it chose {followed})"
