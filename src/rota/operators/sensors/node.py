"""The :class:`Sensor` task node, and what the built-in sensors share.

A :class:`Sensor` subclass from a flow file reaches its worker as a :class:`NodePoker`: its
class and the attributes it set itself (see :mod:`rota.operators.sensors.base`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Final

from rota.errors import DefinitionError
from rota.model import templating
from rota.model.builder import FlowBuilder, TaskNode
from rota.model.callbacks import CallbackArg
from rota.model.dag import TaskSpec
from rota.model.policies import RetryPolicy, TriggerRule
from rota.model.priority import WeightRule
from rota.operators.base import ExecContext, digest, source_hash
from rota.operators.sensors.base import DEFAULT_TIMEOUT, Poker, SensorOp, SensorPolicy


class Sensor(TaskNode):
    """Base of operator-style sensors; a subclass implements :meth:`poke`.

    Attributes a subclass sets in its ``__init__`` travel with the operator (they must pickle);
    :meth:`poke` runs on a bare instance holding only those and ``id``.

    Args:
        poke_interval: seconds (or a timedelta) between pokes.
        timeout: how long after the first poke the sensor gives up (default 7 days).
        mode: ``"poke"`` keeps its worker between pokes; ``"reschedule"`` frees it.
        exponential_backoff: double the wait after each poke.
        max_wait: the longest wait between two pokes (None: the timeout alone bounds it).
        soft_fail: skip the task at the timeout instead of failing it.
        pool: the pool whose slots the sensor takes, as for every task; a ``reschedule``
            sensor holds its pool slots only while it pokes.
        pool_slots: how many slots of *pool* it takes.
        priority_weight: its weight when slots are handed out.
        weight_rule: how its effective weight is computed (downstream, upstream, absolute).

    Raises:
        PolicyError: an invalid option (the message names the task).
        DefinitionError: created outside a flow, or a bad task option.
    """

    def __init__(
        self,
        task_id: str,
        *,
        poke_interval: float | timedelta = 60.0,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        mode: str = "poke",
        exponential_backoff: bool = False,
        max_wait: float | timedelta | None = None,
        soft_fail: bool = False,
        retries: RetryPolicy | int | None = None,
        retry_delay: timedelta | None = None,
        trigger_rule: TriggerRule | str = TriggerRule.ALL_SUCCESS,
        tags: Iterable[str] = (),
        on_success: CallbackArg = None,
        on_failure: CallbackArg = None,
        on_retry: CallbackArg = None,
        pool: str | None = None,
        pool_slots: int = 1,
        priority_weight: int = 1,
        weight_rule: WeightRule | str = WeightRule.DOWNSTREAM,
    ) -> None:
        policy = SensorPolicy.of(
            task_id,
            poke_interval=poke_interval,
            timeout=timeout,
            mode=mode,
            exponential_backoff=exponential_backoff,
            max_wait=max_wait,
            soft_fail=soft_fail,
        )
        before = set(vars(self))
        # The real operator is made by to_spec(): a subclass sets its attributes after this call.
        super().__init__(
            task_id,
            SensorOp(NodePoker(type(self), {}), policy),
            retries=retries,
            retry_delay=retry_delay,
            tags=tags,
            trigger_rule=trigger_rule,
            on_success=on_success,
            on_failure=on_failure,
            on_retry=on_retry,
            pool=pool,
            pool_slots=pool_slots,
            priority_weight=priority_weight,
            weight_rule=weight_rule,
        )
        node_keys = set(vars(self)) - before - {"id"}
        self.sensor_policy = policy
        self._node_keys = frozenset(node_keys | {"sensor_policy", "_node_keys"})

    def poke(self, ctx: ExecContext) -> Any:
        """Check once: truthy when satisfied (a value other than True becomes the output).

        Raises:
            NotImplementedError: the subclass does not implement it.
        """
        raise NotImplementedError(f"{type(self).__qualname__} must implement poke(self, ctx)")

    def waiting_for(self, ctx: ExecContext) -> str:
        """What the sensor waits for, as printed with each poke; override to say more."""
        del ctx
        return f"{type(self).__name__} {self.id!r}"

    def make_poker(self) -> Poker:
        """The picklable object the operator pokes: this class and the attributes set on it."""
        state = {k: v for k, v in vars(self).items() if k not in self._node_keys}
        return NodePoker(type(self), state)

    def to_spec(self) -> TaskSpec:
        """The frozen spec, with the operator built from the sensor's attributes as they are now."""
        self.op = SensorOp(self.make_poker(), self.sensor_policy)
        return super().to_spec()


@dataclass(frozen=True, slots=True)
class NodePoker:
    """Pokes a :class:`Sensor` subclass through a bare instance with the subclass's attributes."""

    cls: type[Sensor]
    state: Mapping[str, Any]

    def _instance(self) -> Sensor:
        obj = object.__new__(self.cls)
        obj.__dict__.update(self.state)
        return obj

    def poke(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        return self._instance().poke(ctx)

    def target(self, ctx: ExecContext) -> str:
        return self._instance().waiting_for(ctx)

    def describe(self) -> str:
        return f"{self.cls.__module__}.{self.cls.__qualname__}"

    def code_hash(self) -> str:
        simple = sorted(
            (k, repr(v))
            for k, v in self.state.items()
            if v is None or isinstance(v, str | int | float | bool | tuple | timedelta)
        )
        return digest(self.describe(), source_hash(self.cls.poke), repr(simple))


SENSOR_OPTIONS: Final = frozenset(inspect.signature(Sensor.__init__).parameters) - {"self"}
"""Keyword options every sensor takes (``task_id`` too, for ``@sensor``)."""


def _check_options(where: str, options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - SENSOR_OPTIONS)
    if unknown:
        known = ", ".join(sorted(SENSOR_OPTIONS - {"task_id"}))
        raise DefinitionError(f"{where}: unknown sensor option {unknown[0]!r} (known: {known})")


class _BuiltIn(Sensor):
    """A built-in sensor: its poker is made from its arguments, not from its attributes."""

    def __init__(self, task_id: str, poker: Poker, options: Mapping[str, Any]) -> None:
        _check_options(f"task {task_id!r}", options)
        self._poker = poker
        super().__init__(task_id, **options)

    def make_poker(self) -> Poker:
        return self._poker


def _render(text: str, ctx: ExecContext) -> str:
    if not templating.is_template(text):
        return text
    return templating.render(text, ctx.template_vars(), where=f"task {ctx.task_id!r}")


def _checked(task_id: str, name: str, text: object) -> str:
    """*text*, a template, checked at definition.

    Raises:
        DefinitionError: not a non-empty string, or not a valid template.
    """
    if not isinstance(text, str) or not text.strip():
        raise DefinitionError(f"task {task_id!r}: {name} must be a non-empty string")
    if templating.is_template(text):
        where = f"task {task_id!r} {name}"
        templating.check_template(text, where=where)
        builder = FlowBuilder.current()
        if builder is not None:
            builder.note_template(where, text)
    return text


@dataclass(frozen=True, slots=True)
class _TextPoker:
    """A poker of one templated text (a path, a URL, a URI), rendered at each poke."""

    text: str
    what: ClassVar[str] = "text"

    def poke(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def target(self, ctx: ExecContext) -> str:
        return _render(self.text, ctx)

    def describe(self) -> str:
        return f"{self.what} {self.text}"

    def code_hash(self) -> str:
        return digest(self.what, self.text)


__all__ = ["SENSOR_OPTIONS", "NodePoker", "Sensor"]
