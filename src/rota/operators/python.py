"""Python tasks: ``PythonTask(id, fn, ...)`` and the ``@task`` decorator."""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from rota.errors import DefinitionError
from rota.model.builder import FlowBuilder, TaskNode, split_mapped
from rota.model.cacheon import coerce_on
from rota.model.callbacks import CallbackArg
from rota.model.policies import RetryPolicy, TriggerRule
from rota.operators.base import ExecContext, RunReads, source_hash


@dataclass(frozen=True, slots=True)
class PythonOp:
    """Calls a function with the task's resolved arguments; its return value is the output."""

    fn: Callable[..., Any]
    takes_ctx: bool = False
    kind: str = "python"

    def describe(self) -> str:
        return f"{getattr(self.fn, '__module__', '?')}.{getattr(self.fn, '__qualname__', self.fn)}"

    def code_hash(self) -> str:
        return source_hash(self.fn)

    def run_reads(self, ctx: ExecContext) -> RunReads:
        """A function taking ``ctx`` can read every parameter and date of the run."""
        del ctx
        return RunReads(self.takes_ctx)

    def __reduce__(self) -> tuple[Any, ...]:
        # A @task function is not reachable by its own name (the name holds the TaskFunction),
        # so plain pickling would copy its code by value and tracebacks would lose the file.
        # Refer to it through the TaskFunction instead when that is importable.
        where = _task_reference(self.fn)
        if where is not None:
            return (_load_task_op, (*where, self.takes_ctx))
        return (PythonOp, (self.fn, self.takes_ctx))

    def execute(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Run the function (given *ctx* if it has a ``ctx`` parameter); exceptions propagate."""
        if self.takes_ctx:
            return self.fn(*args, **kwargs, ctx=ctx)
        return self.fn(*args, **kwargs)


def _task_reference(fn: Callable[..., Any]) -> tuple[str, str] | None:
    """(module, qualname) of the TaskFunction wrapping *fn*, when importable by that name."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    qualname = getattr(fn, "__qualname__", "")
    if module is None or "<" in qualname:
        return None
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if isinstance(target, TaskFunction) and target.fn is fn:
        return module.__name__, qualname
    return None


def _load_task_op(module: str, qualname: str, takes_ctx: bool) -> PythonOp:
    """Unpickle a PythonOp by reference: import *module* and take its TaskFunction's function."""
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return PythonOp(target.fn, takes_ctx)


class PythonTask(TaskNode):
    """An operator-style Python task: ``PythonTask("load", load_fn, args=(...), kwargs={...})``."""

    def __init__(
        self,
        task_id: str,
        fn: Callable[..., Any],
        *,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        retries: RetryPolicy | int | None = None,
        retry_delay: timedelta | None = None,
        timeout: timedelta | float | None = None,
        tags: Iterable[str] = (),
        trigger_rule: TriggerRule | str = TriggerRule.ALL_SUCCESS,
        on_success: CallbackArg = None,
        on_failure: CallbackArg = None,
        on_retry: CallbackArg = None,
        map_args: Iterable[str] = (),
        image: str | None = None,
        container: Mapping[str, Any] | None = None,
        executor: str | None = None,
        **cache_options: Any,
    ) -> None:
        if not callable(fn):
            raise DefinitionError(f"task {task_id!r}: {fn!r} is not callable")
        args = tuple(args)
        kwargs = dict(kwargs or {})
        takes_ctx = "ctx" in _param_names(fn)
        if takes_ctx and "ctx" in kwargs:
            raise DefinitionError(f"task {task_id!r}: 'ctx' is given by Rota at run time")
        _check_call(task_id, fn, args, {**kwargs, "ctx": None} if takes_ctx else kwargs)
        op: Any = PythonOp(fn, takes_ctx)
        if image is not None:  # the function runs in a container (or a pod) of that image
            from rota.operators.imagetask import image_op

            op = image_op(task_id, op, image, container, executor)
        elif container is not None or executor is not None:
            given = "container options" if container is not None else "executor="
            raise DefinitionError(f"task {task_id!r}: {given} need image=")
        super().__init__(
            task_id,
            op,
            args=args,
            kwargs=kwargs,
            retries=retries,
            retry_delay=retry_delay,
            timeout=timeout,
            tags=tags,
            trigger_rule=trigger_rule,
            on_success=on_success,
            on_failure=on_failure,
            on_retry=on_retry,
            map_args=map_args,
            **cache_options,
        )


def _check_call(
    task_id: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> None:
    sig = signature_of(fn)
    if sig is None:  # builtins without a signature: trust the caller
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as err:
        raise DefinitionError(f"task {task_id!r}: {err}") from None


class TaskFunction:
    """A function decorated with ``@task``; called inside a flow, it adds a task and returns it.

    Outside a flow it is the plain function, so it stays easy to unit-test.
    """

    def __init__(self, fn: Callable[..., Any], options: Mapping[str, Any]) -> None:
        self.fn = fn
        self.options = dict(options)
        self.__name__ = getattr(fn, "__name__", "task")
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        self._takes_task_id = "task_id" in _param_names(fn)

    def __repr__(self) -> str:
        return f"<task {self.__qualname__}>"

    def override(self, **options: Any) -> TaskFunction:
        """A copy with other task options (``task_id``, ``retries``, ``timeout``, ``tags``...).

        Raises:
            DefinitionError: an unknown option.
        """
        check_task_options(options, extra=IMAGE_OPTIONS)
        return TaskFunction(self.fn, {**self.options, **options})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = FlowBuilder.current()
        if builder is None:
            return self.fn(*args, **kwargs)
        options = dict(self.options)
        if not self._takes_task_id and "task_id" in kwargs:
            options["task_id"] = kwargs.pop("task_id")
        task_id = options.pop("task_id", None) or builder.auto_id(self.__name__)
        return self.make_node(task_id, args, kwargs, options)

    def make_node(
        self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> TaskNode:
        """The task node a call inside a flow adds (subclasses add other kinds of node)."""
        return PythonTask(task_id, self.fn, args=args, kwargs=kwargs, **options)

    def map(self, *args: Any, **kwargs: Any) -> Any:
        """One task instance per element, decided at run time: ``process.map(items)``.

        Task outputs and list literals are mapped over (several are zipped; their lengths must
        agree); other values, and values wrapped in ``unmapped(...)``, are the same for every
        instance. A downstream receiving the result gets the list of outputs, in order.

        Raises:
            DefinitionError: called outside a flow, nothing to map over, or bad arguments.
        """
        builder = FlowBuilder.current()
        if builder is None:
            raise DefinitionError(f"{self.__name__}.map() is only meaningful inside a flow")
        options = dict(self.options)
        if not self._takes_task_id and "task_id" in kwargs:
            options["task_id"] = kwargs.pop("task_id")
        task_id = options.pop("task_id", None) or builder.auto_id(self.__name__)
        sig = signature_of(self.fn)
        if sig is None:
            raise DefinitionError(f"task {task_id!r}: .map() needs a function with a signature")
        try:
            bound = sig.bind_partial(*args, **kwargs)
        except TypeError as err:
            raise DefinitionError(f"task {task_id!r}: {err}") from None
        arguments, mapped = split_mapped(bound.arguments)
        if not mapped:
            raise DefinitionError(
                f"task {task_id!r}: .map() needs a task output or a list to map over"
            )
        return PythonTask(task_id, self.fn, kwargs=arguments, map_args=mapped, **options)


def _param_names(fn: Callable[..., Any]) -> set[str]:
    sig = signature_of(fn)
    return set() if sig is None else set(sig.parameters)


def signature_of(fn: Callable[..., Any]) -> inspect.Signature | None:
    """*fn*'s signature, or None for a callable without one, read once per function: a flow of
    thousands of tasks often calls a few functions, and reading a signature cost more than the
    rest of a task's definition."""
    try:
        return _cached_signature(fn)
    except TypeError:  # a callable that cannot be a key (unhashable): read it each time
        return _read_signature(fn)


@functools.lru_cache(maxsize=4096)
def _cached_signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    return _read_signature(fn)


def _read_signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


_TASK_OPTIONS = frozenset(
    {
        "task_id",
        "retries",
        "retry_delay",
        "timeout",
        "tags",
        "trigger_rule",
        "on_success",
        "on_failure",
        "on_retry",
        "cache",
        "cache_key",
        "cache_expires",
        "cache_on",
        "version",
        "serializer",
        "outlets",
        "inlets",
        "resources",
        "pool",
        "pool_slots",
        "priority_weight",
        "weight_rule",
    }
)


IMAGE_OPTIONS = frozenset({"image", "container", "executor"})
"""Options of a plain ``@task`` only: run the function in a container of ``image``
(``container``: that container's options, see ``rota.operators.imagetask``), or in a pod with
``executor="kubernetes"`` (``rota.operators.imagepod``)."""


def check_task_options(options: Mapping[str, Any], extra: frozenset[str] = frozenset()) -> None:
    """Refuse options a task decorator does not know (*extra*: those of this kind of task).

    Raises:
        DefinitionError: an unknown option, naming the known ones.
    """
    unknown = sorted(set(options) - _TASK_OPTIONS - extra)
    if unknown:
        known = ", ".join(sorted(_TASK_OPTIONS | extra))
        raise DefinitionError(f"unknown @task option {unknown[0]!r} (known: {known})")
    coerce_on(options.get("cache_on"))  # a bad name is refused where the decorator is


class TaskDecorator:
    """``@task`` (a Python task), ``@task.branch`` (choose the downstreams that run) and
    ``@task.short_circuit`` (a falsy result skips what follows)."""

    def __call__(self, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Decorate a function as a task: ``@task`` or ``@task(retries=3, timeout=60)``.

        Raises:
            DefinitionError: an unknown option.
        """
        check_task_options(options, extra=IMAGE_OPTIONS)
        if fn is not None:
            return TaskFunction(fn, options)

        def wrap(f: Callable[..., Any]) -> TaskFunction:
            return TaskFunction(f, options)

        return wrap

    def branch(self, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        """A branch task (Airflow's ``@task.branch``): the function returns the id, or a list of
        ids, of the direct downstream tasks to run; the others are skipped.

        Raises:
            DefinitionError: an unknown option, or caching.
        """
        from rota.operators.branch import branch

        return branch(fn, **options)

    def short_circuit(self, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        """A short-circuit task (Airflow's ``@task.short_circuit``): a falsy return value skips
        every task downstream (only the direct ones with ``ignore_downstream_trigger_rules=False``).

        Raises:
            DefinitionError: an unknown option, or caching.
        """
        from rota.operators.branch import short_circuit

        return short_circuit(fn, **options)


task = TaskDecorator()
"""Decorate a function as a task: ``@task``, ``@task(retries=3)``, ``@task.branch``,
``@task.short_circuit``."""
