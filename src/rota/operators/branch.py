"""Branch and short-circuit tasks: ``BranchTask``, ``ShortCircuitTask``, ``@task.branch`` and
``@task.short_circuit``, with Airflow's meaning (see :mod:`rota.model.branching`).

The function runs like a Python task's; its return value is the task's output. A branch's value
names the direct downstream tasks to follow; a short-circuit's falsy value skips what follows it.
The engine applies the choice when the task's success is committed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rota.errors import DefinitionError
from rota.model.branching import Choice, Chosen, branch_ids
from rota.model.builder import TaskNode
from rota.operators.base import ExecContext, digest
from rota.operators.python import PythonOp, PythonTask, TaskFunction, check_task_options

_REFUSED = ("cache", "cache_key", "cache_expires", "map_args")


def _refuse(task_id: str, what: str, options: Mapping[str, Any]) -> None:
    """A choice is made anew by every run: a cached or mapped branch would have none to apply."""
    for name in _REFUSED:
        if options.get(name):
            raise DefinitionError(f"{what} {task_id!r} cannot take {name}=: it chooses every run")


@dataclass(frozen=True, slots=True)
class BranchOp:
    """Calls the function and follows the direct downstreams its value names."""

    call: PythonOp
    kind: str = "branch"

    def describe(self) -> str:
        return self.call.describe()

    def code_hash(self) -> str:
        return digest("branch", self.call.code_hash())

    def execute(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Chosen:
        """Run the function; a value that names no direct downstream fails the attempt.

        Raises:
            BranchError: the value is not a task id, a list of ids, or None, or names a task
                that is not a direct downstream.
        """
        value = self.call.execute(ctx, args, kwargs)
        follow = branch_ids(value, ctx.downstream, ctx.task_id)
        print(f"[rota] branch follows {', '.join(follow) or 'no task'}", file=sys.stderr)
        return Chosen(value, Choice(follow=follow))


@dataclass(frozen=True, slots=True)
class ShortCircuitOp:
    """Calls the function; a falsy value skips the tasks downstream."""

    call: PythonOp
    ignore_downstream_trigger_rules: bool = True
    kind: str = "short_circuit"

    def describe(self) -> str:
        return self.call.describe()

    def code_hash(self) -> str:
        return digest(
            "short_circuit", self.call.code_hash(), str(self.ignore_downstream_trigger_rules)
        )

    def execute(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Chosen:
        """Run the function; its value is the output, and a falsy one skips the tasks after."""
        value = self.call.execute(ctx, args, kwargs)
        if value:
            return Chosen(value, None)
        print(f"[rota] short-circuit: {value!r} is falsy; skipping downstream", file=sys.stderr)
        return Chosen(
            value, Choice(short_circuit=True, everything=self.ignore_downstream_trigger_rules)
        )


def _call_of(node: TaskNode) -> PythonOp:
    """The function call PythonTask made for *node*."""
    if not isinstance(node.op, PythonOp):  # pragma: no cover - PythonTask always makes one
        raise TypeError(f"{node!r} has no Python call")
    return node.op


class BranchTask(PythonTask):
    """An operator-style branch: ``BranchTask("pick", fn)``; ``fn`` returns the id (or ids) of
    the direct downstream tasks to run, and the others are skipped.

    Takes PythonTask's options, except caching and mapping.
    """

    def __init__(self, task_id: str, fn: Callable[..., Any], **options: Any) -> None:
        _refuse(task_id, "branch task", options)
        super().__init__(task_id, fn, **options)
        self.op = BranchOp(_call_of(self))


class ShortCircuitTask(PythonTask):
    """An operator-style short-circuit: ``ShortCircuitTask("check", fn)``; when ``fn`` returns a
    falsy value, every task downstream is skipped (only the direct ones, leaving the rest to their
    trigger rules, with ``ignore_downstream_trigger_rules=False``).
    """

    def __init__(
        self,
        task_id: str,
        fn: Callable[..., Any],
        *,
        ignore_downstream_trigger_rules: bool = True,
        **options: Any,
    ) -> None:
        if not isinstance(ignore_downstream_trigger_rules, bool):
            raise DefinitionError(
                f"task {task_id!r}: ignore_downstream_trigger_rules must be True or False"
            )
        _refuse(task_id, "short-circuit task", options)
        super().__init__(task_id, fn, **options)
        self.op = ShortCircuitOp(_call_of(self), ignore_downstream_trigger_rules)


class BranchFunction(TaskFunction):
    """A function decorated with ``@task.branch``; called inside a flow it adds a BranchTask."""

    def __repr__(self) -> str:
        return f"<branch task {self.__qualname__}>"

    def override(self, **options: Any) -> BranchFunction:
        """A copy with other task options.

        Raises:
            DefinitionError: an unknown option.
        """
        check_task_options(options)
        return BranchFunction(self.fn, {**self.options, **options})

    def make_node(
        self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> TaskNode:
        return BranchTask(task_id, self.fn, args=args, kwargs=kwargs, **options)

    def map(self, *args: Any, **kwargs: Any) -> Any:
        """Not supported.

        Raises:
            DefinitionError: always; a branch chooses once per run.
        """
        raise DefinitionError(f"branch task {self.__name__!r} cannot be mapped")


class ShortCircuitFunction(BranchFunction):
    """A function decorated with ``@task.short_circuit``; inside a flow it adds a
    ShortCircuitTask."""

    def __repr__(self) -> str:
        return f"<short-circuit task {self.__qualname__}>"

    def override(self, **options: Any) -> ShortCircuitFunction:
        """A copy with other task options.

        Raises:
            DefinitionError: an unknown option.
        """
        check_task_options(options, extra=SHORT_CIRCUIT_OPTIONS)
        return ShortCircuitFunction(self.fn, {**self.options, **options})

    def make_node(
        self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> TaskNode:
        return ShortCircuitTask(task_id, self.fn, args=args, kwargs=kwargs, **options)


SHORT_CIRCUIT_OPTIONS = frozenset({"ignore_downstream_trigger_rules"})


def branch(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """``@task.branch`` or ``@task.branch(retries=2)``: the function returns the id (or a list of
    ids, or None) of the direct downstream tasks to run; the others are skipped.

    Raises:
        DefinitionError: an unknown option.
    """
    check_task_options(options)
    if fn is not None:
        return BranchFunction(fn, options)
    return lambda f: BranchFunction(f, options)


def short_circuit(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """``@task.short_circuit`` or ``@task.short_circuit(ignore_downstream_trigger_rules=False)``:
    a falsy return value skips the tasks downstream.

    Raises:
        DefinitionError: an unknown option.
    """
    check_task_options(options, extra=SHORT_CIRCUIT_OPTIONS)
    if fn is not None:
        return ShortCircuitFunction(fn, options)
    return lambda f: ShortCircuitFunction(f, options)
