"""Sensors that call a Python function: :class:`PythonSensor` and the ``@sensor``
decorator."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rota.errors import DefinitionError
from rota.model.builder import TaskNode
from rota.operators.base import ExecContext
from rota.operators.python import PythonOp, TaskFunction, _check_call, _param_names
from rota.operators.sensors.node import _BuiltIn, _check_options


@dataclass(frozen=True, slots=True)
class CallPoker:
    """Satisfied when the function returns a truthy value (the output, unless True)."""

    call: PythonOp

    def poke(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        return self.call.execute(ctx, args, kwargs)

    def target(self, ctx: ExecContext) -> str:
        return f"{self.call.describe()}()"

    def describe(self) -> str:
        return self.call.describe()

    def code_hash(self) -> str:
        return self.call.code_hash()


class PythonSensor(_BuiltIn):
    """Pokes ``fn(*args, **kwargs)`` (given ``ctx`` if it has that parameter) until truthy.

    Task outputs among *args* and *kwargs* make data edges, as for PythonTask.
    """

    def __init__(
        self,
        task_id: str,
        fn: Callable[..., Any],
        *,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        **sensor_options: Any,
    ) -> None:
        if not callable(fn):
            raise DefinitionError(f"task {task_id!r}: {fn!r} is not callable")
        call_args, call_kwargs = tuple(args), dict(kwargs or {})
        takes_ctx = "ctx" in _param_names(fn)
        if takes_ctx and "ctx" in call_kwargs:
            raise DefinitionError(f"task {task_id!r}: 'ctx' is given by Rota at run time")
        bound = {**call_kwargs, "ctx": None} if takes_ctx else call_kwargs
        _check_call(task_id, fn, call_args, bound)
        super().__init__(task_id, CallPoker(PythonOp(fn, takes_ctx)), sensor_options)
        self.args, self.kwargs = call_args, call_kwargs


class SensorFunction(TaskFunction):
    """A function decorated with ``@sensor``; called inside a flow it adds a PythonSensor."""

    def __repr__(self) -> str:
        return f"<sensor {self.__qualname__}>"

    def override(self, **options: Any) -> SensorFunction:
        """A copy with other sensor options.

        Raises:
            DefinitionError: an unknown option.
        """
        _check_options(f"sensor {self.__name__!r}", options)
        return SensorFunction(self.fn, {**self.options, **options})

    def make_node(
        self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]
    ) -> TaskNode:
        """A PythonSensor for a call inside a flow."""
        return PythonSensor(task_id, self.fn, args=args, kwargs=kwargs, **options)

    def map(self, *args: Any, **kwargs: Any) -> Any:
        """Not supported.

        Raises:
            DefinitionError: always; a sensor cannot be mapped.
        """
        raise DefinitionError(f"sensor {self.__name__!r} cannot be mapped")


def sensor(fn: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Decorate a function as a sensor: ``@sensor`` or ``@sensor(poke_interval=5, mode=...)``.

    Raises:
        DefinitionError: an unknown option.
    """
    where = f"sensor {getattr(fn, '__name__', '')!r}" if fn is not None else "@sensor"
    _check_options(where, options)
    if fn is not None:
        return SensorFunction(fn, options)

    def wrap(f: Callable[..., Any]) -> SensorFunction:
        return SensorFunction(f, options)

    return wrap


__all__ = ["CallPoker", "PythonSensor", "SensorFunction", "sensor"]
