"""Flow definitions: ``with Flow("name"):`` (operator style) and ``@flow`` (TaskFlow style).

Both record task nodes through a :class:`~rota.model.builder.FlowBuilder` and build a validated
:class:`~rota.model.dag.Dag`; both carry :class:`~rota.model.builder.FlowOptions`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, Protocol

from rota.errors import DefinitionError, FlowNotCalled
from rota.model.builder import FlowBuilder, FlowOptions, activate
from rota.model.dag import REQUIRED, Dag, ParamSpec, check_name
from rota.model.datasets import Dataset
from rota.model.params import merge_params
from rota.model.schedule import FlowTiming


class FlowDefinition(Protocol):
    """Anything a flow file defines that can be built into a Dag."""

    name: str

    @property
    def schedule(self) -> tuple[Dataset, ...]: ...

    @property
    def timing(self) -> FlowTiming: ...

    @property
    def params(self) -> tuple[ParamSpec, ...]: ...

    def build(self, params: Mapping[str, Any] | None = None) -> Dag: ...


class Flow:
    """An operator-style flow: ``with Flow("name") as f:`` then create tasks inside the block."""

    def __init__(
        self,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        description: str = "",
        **options: Any,
    ) -> None:
        self.name = check_name(name, what="flow name")
        self.description = description
        self._params = tuple(ParamSpec(k, v) for k, v in (params or {}).items())
        self._builder = FlowBuilder(self.name, _options(self.name, options))
        self._active: Any = None

    def __repr__(self) -> str:
        return f"<Flow {self.name!r} ({len(self._builder.nodes)} tasks)>"

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise not_called(self.name, "f", kwargs)

    def __enter__(self) -> Flow:
        self._active = activate(self._builder)
        self._active.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._active.__exit__(None, None, None)

    @property
    def params(self) -> tuple[ParamSpec, ...]:
        return self._params

    @property
    def schedule(self) -> tuple[Dataset, ...]:
        """The datasets this flow is scheduled on (empty: not scheduled on datasets)."""
        return self._builder.options.schedule

    @property
    def timing(self) -> FlowTiming:
        """When the flow runs: its schedule, catchup and max_active_runs."""
        return self._builder.options.timing

    def build(self, params: Mapping[str, Any] | None = None) -> Dag:
        """Validate the tasks created in the block and return the graph.

        Raises:
            ParameterError: unknown or missing parameters.
            DefinitionError: an invalid graph (CycleError for a cycle).
        """
        values = merge_params(self.name, self._params, params)
        return self._builder.freeze(values, param_defaults(self._params))


def param_defaults(specs: tuple[ParamSpec, ...]) -> dict[str, Any]:
    """Each parameter's default, for those that have one."""
    return {p.name: p.default for p in specs if p.default is not REQUIRED}


class FlowFunction:
    """A TaskFlow-style flow: a function whose body, called with the parameters, calls tasks."""

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        description: str = "",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.fn = fn
        self.name = check_name(name or fn.__name__, what="flow name")
        self.options = _options(self.name, options or {})
        self.description = description or inspect.getdoc(fn) or ""
        specs = []
        for p in inspect.signature(fn).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise DefinitionError(f"flow {self.name!r}: *args/**kwargs cannot be parameters")
            specs.append(ParamSpec(p.name, REQUIRED if p.default is p.empty else p.default))
        self._params = tuple(specs)

    def __repr__(self) -> str:
        return f"<flow {self.name!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise not_called(self.name, self.fn.__name__, kwargs, plain=True)

    @property
    def schedule(self) -> tuple[Dataset, ...]:
        """The datasets this flow is scheduled on (empty: not scheduled on datasets)."""
        return self.options.schedule

    @property
    def timing(self) -> FlowTiming:
        """When the flow runs: its schedule, catchup and max_active_runs."""
        return self.options.timing

    @property
    def params(self) -> tuple[ParamSpec, ...]:
        return self._params

    def build(self, params: Mapping[str, Any] | None = None) -> Dag:
        """Call the flow body with the merged parameters, recording its tasks, and validate.

        Raises:
            ParameterError: unknown or missing parameters.
            DefinitionError: an invalid graph (CycleError for a cycle).
        """
        values = merge_params(self.name, self._params, params)
        with activate(FlowBuilder(self.name, self.options)) as builder:
            self.fn(**values)
        return builder.freeze(values, param_defaults(self._params))


def not_called(
    name: str, var: str, kwargs: Mapping[str, Any], *, plain: bool = False
) -> FlowNotCalled:
    """The error of calling flow *name* (bound to *var*) like a function, saying what to do.

    The parameters' values are not shown (one may be a secret), only their names.
    """
    given = ", ".join(f"{k}=..." for k in kwargs)
    fn = f"; {var}.fn(...) calls the plain function" if plain else ""
    return FlowNotCalled(
        f"flow {name!r} is not run by calling it: use {var}.run({given}), which runs it as "
        f"`rota run FILE:{name}` does and returns a RunResult{fn}"
    )


def _options(flow: str, options: Mapping[str, Any]) -> FlowOptions:
    try:
        return FlowOptions(**options)
    except TypeError:
        known = ", ".join(sorted(inspect.signature(FlowOptions).parameters))
        unknown = sorted(set(options) - set(inspect.signature(FlowOptions).parameters))
        raise DefinitionError(
            f"flow {flow!r}: unknown option {unknown[0] if unknown else options!r} (known: {known})"
        ) from None


def flow(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str = "",
    **options: Any,
) -> Any:
    """Decorate a function as a flow: ``@flow`` or ``@flow(name="nightly", default_retries=2)``.

    The function's parameters, with their defaults, are the flow's parameters; *options* are
    those of :class:`FlowOptions`.
    """
    if fn is not None:
        return FlowFunction(fn, name, description, options)

    def wrap(f: Callable[..., Any]) -> FlowFunction:
        return FlowFunction(f, name, description, options)

    return wrap
