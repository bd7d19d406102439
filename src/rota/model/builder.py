"""Authoring: the objects a flow file builds a graph with, in both styles.

Operator style opens ``with Flow("name"):`` and creates task objects joined with ``>>``; TaskFlow
style decorates a function with ``@flow`` whose body calls ``@task`` functions. Both record
:class:`TaskNode` objects in the builder of the innermost open flow (a context variable, so
nothing global) and both freeze into a validated :class:`~rota.model.dag.Dag`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from rota.errors import DefinitionError
from rota.model.cacheon import check_params
from rota.model.callbacks import CallbackArg, Callbacks
from rota.model.dag import (
    Dag,
    Operator,
    Ref,
    TaskSpec,
    check_task_id,
    refs_in,
)
from rota.model.datasets import Dataset, coerce_datasets
from rota.model.policies import (
    CachePolicy,
    KeyFn,
    RetryPolicy,
    TriggerRule,
    coerce_timeout,
)
from rota.model.pools import PoolUse, check_count
from rota.model.priority import Priority, WeightRule
from rota.model.resources import coerce_resources
from rota.model.schedule import FlowTiming, Schedule
from rota.model.templating import check_template_names


class FlowOptions:
    """Flow-wide settings: defaults for every task that does not set its own, run callbacks, and
    when the flow runs.

    Args:
        default_retries: ``retries=`` for tasks that set none (an int or a RetryPolicy).
        default_retry_delay: ``retry_delay=`` to go with an int ``default_retries``.
        default_timeout: ``timeout=`` for tasks that set none.
        on_success, on_failure, on_retry: task callbacks for tasks that set none.
        on_run_success, on_run_failure: called once when a run of the flow ends.
        schedule: a cron expression or preset (``"0 3 * * *"``, ``"@daily"``), a timedelta, a
            :class:`~rota.model.schedule.Schedule`, or a list of datasets (the flow is due when
            each has a new version).
        timezone: IANA zone a cron schedule (and naive ``start_date``/``end_date``) is read in.
        start_date, end_date: bounds of the schedule's intervals (inclusive).
        catchup: after downtime, create a run for every missed interval (True) or only the
            latest (False, the default).
        max_active_runs: at most this many runs of the flow are queued or running at once.
        max_active_tasks: at most this many tasks of one run are queued or running at once (as
            Airflow's, per run; None, the default: no limit but the executor's workers and the
            pools).
    """

    def __init__(
        self,
        *,
        default_retries: RetryPolicy | int | None = None,
        default_retry_delay: timedelta | None = None,
        default_timeout: timedelta | float | None = None,
        on_success: CallbackArg = None,
        on_failure: CallbackArg = None,
        on_retry: CallbackArg = None,
        on_run_success: CallbackArg = None,
        on_run_failure: CallbackArg = None,
        schedule: str | timedelta | Schedule | Iterable[Dataset | str] | None = None,
        timezone: str = "UTC",
        start_date: datetime | None = None,
        end_date: datetime | None = None,
        catchup: bool = False,
        max_active_runs: int = 16,
        max_active_tasks: int | None = None,
    ) -> None:
        if max_active_tasks is not None:
            check_count(max_active_tasks, what="max_active_tasks", low=1)
        self.max_active_tasks = max_active_tasks
        given = default_retries is not None or default_retry_delay is not None
        self.retry = RetryPolicy.coerce(default_retries, default_retry_delay) if given else None
        self.timeout = coerce_timeout(default_timeout)
        self.callbacks = Callbacks.of(on_success, on_failure, on_retry)
        self.run_callbacks = Callbacks.of(on_run_success, on_run_failure)
        self.timing = _timing(schedule, timezone, start_date, end_date, catchup, max_active_runs)
        self.schedule = self.timing.datasets
        """The datasets the flow is scheduled on (empty when it is not)."""


def _timing(
    schedule: object,
    timezone: str,
    start_date: datetime | None,
    end_date: datetime | None,
    catchup: bool,
    max_active_runs: int,
) -> FlowTiming:
    if not isinstance(catchup, bool):
        raise DefinitionError(f"catchup must be True or False, got {catchup!r}")
    if isinstance(max_active_runs, bool) or not isinstance(max_active_runs, int):
        raise DefinitionError(f"max_active_runs must be an int, got {max_active_runs!r}")
    for name, value in (("start_date", start_date), ("end_date", end_date)):
        if value is not None and not isinstance(value, datetime):
            raise DefinitionError(f"{name} must be a datetime, got {value!r}")
    clock: Schedule | None = None
    datasets: tuple[Dataset, ...] = ()
    if isinstance(schedule, Schedule):
        clock = schedule
    elif isinstance(schedule, str | timedelta):
        clock = Schedule.parse(
            schedule, timezone=timezone, start_date=start_date, end_date=end_date
        )
    elif schedule is not None:
        if not isinstance(schedule, Iterable) or isinstance(schedule, bytes):
            raise DefinitionError(
                "schedule must be a cron expression, a preset, a timedelta, or a list of "
                f"datasets, got {schedule!r}"
            )
        datasets = coerce_datasets("schedule", schedule)
    else:
        # checks the zone even without a schedule (an interval: no cron parser is loaded)
        Schedule.parse(timedelta(days=1), timezone=timezone)
    return FlowTiming(clock, datasets, catchup, max_active_runs, timezone)


NO_OPTIONS = FlowOptions()

_current: ContextVar[FlowBuilder | None] = ContextVar("rota_flow_builder", default=None)


class FlowBuilder:
    """Collects the task nodes created while one flow is being defined."""

    def __init__(self, name: str, options: FlowOptions = NO_OPTIONS) -> None:
        self.name = name
        self.options = options
        self.nodes: dict[str, TaskNode] = {}
        self._calls: dict[str, int] = {}
        self._templates: list[tuple[str, str, bool]] = []

    @staticmethod
    def current() -> FlowBuilder | None:
        """The builder of the innermost flow being defined in this context, if any."""
        return _current.get()

    def auto_id(self, base: str) -> str:
        """``base`` for the first call, then ``base__1``, ``base__2``, ... (as Airflow does)."""
        n = self._calls.get(base, 0)
        candidate = base if n == 0 else f"{base}__{n}"
        while candidate in self.nodes:  # skip ids taken explicitly
            n += 1
            candidate = f"{base}__{n}"
        self._calls[base] = n + 1
        return candidate

    def add(self, node: TaskNode) -> None:
        """Register *node*; its id must be new in this flow.

        Raises:
            DefinitionError: the id is taken.
        """
        if node.id in self.nodes:
            raise DefinitionError(f"duplicate task id {node.id!r} in flow {self.name!r}")
        self.nodes[node.id] = node

    def note_template(self, where: str, text: str, *, shell: bool = False) -> None:
        """Remember a task's template, so that :meth:`freeze` checks the names it uses."""
        self._templates.append((where, text, shell))

    def freeze(self, params: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> Dag:
        """Turn the recorded nodes into a validated Dag (*defaults*: the parameters' defaults).

        Raises:
            DefinitionError: an invalid graph, or a template naming a variable or a parameter
                that does not exist, or a ``cache_on=`` naming a parameter that does not (found
                here, not when the task runs).
        """
        for where, text, shell in self._templates:
            check_template_names(text, params, where=where, shell=shell, flow=self.name)
        specs = [n.to_spec() for n in self.nodes.values()]
        for spec in specs:
            if spec.cache is not None and spec.cache.on:
                check_params(spec.id, spec.cache.on, params)
        return Dag.build(
            self.name, specs, params, self.options.run_callbacks, self.options.schedule, defaults,
            max_active_tasks=self.options.max_active_tasks,
        )  # fmt: skip


class TaskNode:
    """A task being defined: its operator, arguments and edges. ``a >> b`` makes b run after a.

    Passing a node as an argument to another task makes a data edge: the downstream receives the
    node's output in its place (also inside lists, tuples and dicts).
    """

    def __init__(
        self,
        task_id: str,
        op: Operator,
        *,
        args: tuple[Any, ...] = (),
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
        cache: bool = False,
        cache_key: KeyFn | None = None,
        cache_expires: timedelta | None = None,
        cache_on: Iterable[str] | str | None = None,
        version: str = "",
        serializer: str | None = None,
        outlets: Iterable[Dataset | str] | Dataset | str | None = None,
        inlets: Iterable[Dataset | str] | Dataset | str | None = None,
        resources: Mapping[str, object] | None = None,
        pool: str | None = None,
        pool_slots: int = 1,
        priority_weight: int = 1,
        weight_rule: WeightRule | str = WeightRule.DOWNSTREAM,
    ) -> None:
        builder = FlowBuilder.current()
        if builder is None:
            raise DefinitionError(
                f"task {task_id!r} is defined outside a flow: create it inside "
                "'with Flow(...):' or a @flow function"
            )
        self.id = check_task_id(task_id)
        self.op = op
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        given = retries is not None or retry_delay is not None
        self.retry = RetryPolicy.coerce(retries, retry_delay) if given else None
        self.timeout = coerce_timeout(timeout)
        if isinstance(tags, str):
            tags = (tags,)
        self.tags = frozenset(tags)
        self.trigger_rule = TriggerRule.coerce(trigger_rule)
        self.callbacks = Callbacks.of(on_success, on_failure, on_retry)
        self.map_args = tuple(map_args)
        self.cache = CachePolicy.coerce(cache, cache_key, cache_expires, version, cache_on)
        if serializer is not None and not isinstance(serializer, str):
            raise DefinitionError(
                f"task {task_id!r}: serializer must be a name, got {serializer!r}"
            )
        self.serializer = serializer
        self.outlets = coerce_datasets("outlets", outlets)
        self.inlets = coerce_datasets("inlets", inlets)
        self.resources = coerce_resources(task_id, resources)
        self.pool = PoolUse.of(task_id, pool, pool_slots)
        self.priority = Priority.of(task_id, priority_weight, weight_rule)
        for name in self.map_args:
            if name not in self.kwargs:
                raise DefinitionError(f"task {task_id!r}: mapped argument {name!r} is not given")
        self.flow = builder
        self._after: dict[str, None] = {}
        builder.add(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r} in flow {self.flow.name!r}>"

    # --- edges ---------------------------------------------------------------------------------
    def set_upstream(self, other: TaskNode) -> None:
        """Make this task run after *other*.

        Raises:
            DefinitionError: *other* is not a task of the same flow.
        """
        if not isinstance(other, TaskNode):
            raise DefinitionError(f"cannot make {self.id!r} depend on {other!r}: not a task")
        if other.flow is not self.flow:
            raise DefinitionError(
                f"{other.id!r} (flow {other.flow.name!r}) and {self.id!r} "
                f"(flow {self.flow.name!r}) are in different flows"
            )
        self._after[other.id] = None

    def __rshift__(self, other: TaskNode | list[TaskNode]) -> Any:
        for node in _as_nodes(other):
            node.set_upstream(self)
        return other

    def __lshift__(self, other: TaskNode | list[TaskNode]) -> Any:
        for node in _as_nodes(other):
            self.set_upstream(node)
        return other

    def __rrshift__(self, other: list[TaskNode]) -> TaskNode:
        # [a, b] >> self
        for node in _as_nodes(other):
            self.set_upstream(node)
        return self

    def __rlshift__(self, other: list[TaskNode]) -> TaskNode:
        # [a, b] << self
        for node in _as_nodes(other):
            node.set_upstream(self)
        return self

    # --- freezing ------------------------------------------------------------------------------
    def to_spec(self) -> TaskSpec:
        """The frozen spec: node arguments replaced by refs, data edges added to upstream."""
        args = _to_refs(self.args, self.flow)
        kwargs = _to_refs(self.kwargs, self.flow)
        upstream: dict[str, None] = {}
        for value in (args, kwargs):
            for tid in refs_in(value):
                upstream[tid] = None
        upstream.update(self._after)
        defaults = self.flow.options
        return TaskSpec(
            id=self.id,
            op=self.op,
            args=args,
            kwargs=kwargs,
            upstream=tuple(upstream),
            retry=self.retry or defaults.retry or RetryPolicy(),
            timeout=self.timeout or defaults.timeout,
            tags=self.tags,
            trigger_rule=self.trigger_rule,
            callbacks=self.callbacks.with_defaults(defaults.callbacks),
            map_args=self.map_args,
            cache=self.cache,
            serializer=self.serializer,
            outlets=self.outlets,
            inlets=self.inlets,
            resources=self.resources,
            pool=self.pool,
            priority=self.priority,
        )


class unmapped:
    """Marks an argument of ``.map(...)`` as the same for every instance, even if it is a list."""

    def __init__(self, value: Any) -> None:
        self.value = value


def split_mapped(arguments: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Unwrap :class:`unmapped` values; return the arguments and the names mapped over.

    Mapped: task outputs and list or tuple literals. Constant: everything else, and unmapped().
    """
    kwargs: dict[str, Any] = {}
    mapped: list[str] = []
    for name, value in arguments.items():
        if isinstance(value, unmapped):
            kwargs[name] = value.value
            continue
        kwargs[name] = value
        if isinstance(value, TaskNode | list | tuple):
            mapped.append(name)
    return kwargs, tuple(mapped)


def _as_nodes(value: object) -> list[TaskNode]:
    items = list(value) if isinstance(value, list | tuple | set) else [value]
    for item in items:
        if not isinstance(item, TaskNode):
            raise DefinitionError(f"cannot chain {item!r} with >> or <<: not a task")
    return items  # type: ignore[return-value]


def _to_refs(value: Any, flow: FlowBuilder) -> Any:
    if isinstance(value, TaskNode):
        if value.flow is not flow:
            raise DefinitionError(f"output of {value.id!r} is used in another flow")
        return Ref(value.id)
    if isinstance(value, list):
        return [_to_refs(v, flow) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_refs(v, flow) for v in value)
    if isinstance(value, dict):
        return {k: _to_refs(v, flow) for k, v in value.items()}
    return value


@contextmanager
def activate(builder: FlowBuilder) -> Iterator[FlowBuilder]:
    """Make *builder* the one that tasks created in this block register with."""
    token = _current.set(builder)
    try:
        yield builder
    finally:
        _current.reset(token)
