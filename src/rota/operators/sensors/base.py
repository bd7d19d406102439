"""Sensors: tasks that wait for something (a file, a key, another flow's run, a dataset).

A sensor's operator pokes until the poke is satisfied (returns a truthy value), then succeeds with
that value as its output (None when it returned exactly True). While it is not, the sensor waits
``poke_interval`` seconds (doubled after each poke with ``exponential_backoff``, at most
``max_wait``) and pokes again: in the same worker in ``poke`` mode, or, in ``reschedule`` mode, by
raising :class:`~rota.errors.Reschedule` so that the engine frees the worker and dispatches the same
attempt again later. ``timeout`` counts from the first poke of the attempt (``ctx.first_poke_at``,
kept by the engine across dispatches); past it the sensor fails with
:class:`~rota.errors.SensorTimeout` (never retried), or skips itself with ``soft_fail``. Only an
exception raised by a poke is a failure; "not yet" never is.

The operator never holds the task node (which holds the whole flow): it holds a small picklable
*poker*. A :class:`Sensor` subclass from a flow file is carried as its class and the attributes it
set itself, and poked through a bare instance rebuilt from them.
"""

from __future__ import annotations

import glob
import inspect
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final, NoReturn, Protocol

from rota.errors import DefinitionError, PolicyError, Reschedule, RotaError, SensorTimeout, Skip
from rota.model import templating
from rota.model.builder import FlowBuilder, TaskNode
from rota.model.callbacks import CallbackArg
from rota.model.dag import TaskSpec
from rota.model.datasets import Dataset
from rota.model.policies import RetryPolicy, TriggerRule
from rota.model.states import RunState
from rota.operators.base import ExecContext, digest, source_hash
from rota.operators.python import PythonOp, TaskFunction, _check_call, _param_names

if TYPE_CHECKING:
    from rota.store.base import Store

MODES: Final = ("poke", "reschedule")
DEFAULT_TIMEOUT: Final = timedelta(days=7)
_ENDED: Final = frozenset({RunState.SUCCESS, RunState.FAILED})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class UpstreamRunFailed(Exception):
    """Raised by a FlowRunSensor when the run it waits for ended in a state it does not accept."""


# --- how a sensor waits --------------------------------------------------------------------


def _seconds(task_id: str, name: str, value: object) -> float:
    """*value* (seconds or a timedelta) as positive seconds.

    Raises:
        PolicyError: not a number or timedelta, or not positive and finite.
    """
    if isinstance(value, timedelta):
        secs = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        secs = float(value)
    else:
        raise PolicyError(f"task {task_id!r}: {name} must be seconds or a timedelta, got {value!r}")
    if not math.isfinite(secs) or secs <= 0:
        raise PolicyError(f"task {task_id!r}: {name} must be positive, got {value!r}")
    return secs


@dataclass(frozen=True, slots=True)
class SensorPolicy:
    """How a sensor waits between pokes and for how long in all (seconds)."""

    poke_interval: float = 60.0
    timeout: float = DEFAULT_TIMEOUT.total_seconds()
    mode: str = "poke"
    exponential_backoff: bool = False
    max_wait: float | None = None
    soft_fail: bool = False

    @classmethod
    def of(
        cls,
        task_id: str,
        *,
        poke_interval: float | timedelta = 60.0,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        mode: str = "poke",
        exponential_backoff: bool = False,
        max_wait: float | timedelta | None = None,
        soft_fail: bool = False,
    ) -> SensorPolicy:
        """The policy of sensor *task_id*, validated.

        Raises:
            PolicyError: a non-positive duration, an unknown mode, or a flag that is not a bool.
        """
        if mode not in MODES:
            raise PolicyError(
                f"task {task_id!r}: mode must be 'poke' or 'reschedule', got {mode!r}"
            )
        for name, flag in (("exponential_backoff", exponential_backoff), ("soft_fail", soft_fail)):
            if not isinstance(flag, bool):
                raise PolicyError(f"task {task_id!r}: {name} must be True or False, got {flag!r}")
        return cls(
            _seconds(task_id, "poke_interval", poke_interval),
            _seconds(task_id, "timeout", timeout),
            mode,
            exponential_backoff,
            None if max_wait is None else _seconds(task_id, "max_wait", max_wait),
            soft_fail,
        )

    def wait(self, pokes: int) -> float:
        """Seconds to wait after an unsatisfied poke that had *pokes* pokes before it."""
        base = self.poke_interval
        if self.exponential_backoff:
            base *= 2.0 ** min(pokes, 64)
        return base if self.max_wait is None else min(base, self.max_wait)


# --- the operator ----------------------------------------------------------------------------


class Poker(Protocol):
    """What a sensor checks; picklable, so it can go to a worker process."""

    def poke(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Truthy when satisfied (the value is the output unless it is True); exceptions fail."""

    def target(self, ctx: ExecContext) -> str:
        """What the sensor waits for, for the log (templates rendered)."""

    def describe(self) -> str:
        """A short description, templates unrendered."""

    def code_hash(self) -> str:
        """A digest of what is checked and how."""


@dataclass(frozen=True, slots=True, eq=False)
class SensorOp:
    """Pokes *poker* under *policy*; see the module docstring for the contract with the engine."""

    poker: Poker
    policy: SensorPolicy
    kind: str = "sensor"
    is_sensor: ClassVar[bool] = True

    def describe(self) -> str:
        return f"{self.poker.describe()} ({self.policy.mode})"

    def code_hash(self) -> str:
        return digest("sensor", self.poker.code_hash())

    def sensor_timeout(self) -> float | None:
        """Seconds from the first poke after which the sensor times out."""
        return self.policy.timeout

    def execute(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Poke until satisfied; return the output.

        Raises:
            Reschedule: in reschedule mode, not satisfied yet (poke again at ``at``).
            SensorTimeout: not satisfied within the timeout (Skip instead with ``soft_fail``).
            Exception: whatever a poke raised.
        """
        first = time.time() if ctx.first_poke_at is None else ctx.first_poke_at
        pokes = ctx.pokes
        while True:
            value = self.poker.poke(ctx, args, kwargs)
            pokes += 1
            if value:
                _say(pokes, f"satisfied: {self.poker.target(ctx)}")
                return None if value is True else value
            _say(pokes, f"waiting for {self.poker.target(ctx)}")
            at = self._next_poke_at(ctx, first, pokes - 1)
            if self.policy.mode == "reschedule":
                raise Reschedule(at)
            time.sleep(max(0.0, at - time.time()))

    def _next_poke_at(self, ctx: ExecContext, first: float, before: int) -> float:
        """Epoch time of the next poke, never past the deadline.

        Raises:
            SensorTimeout: the deadline has passed (Skip with ``soft_fail``).
        """
        now = time.time()
        deadline = first + self.policy.timeout
        if now >= deadline:
            self._time_out(ctx, first)
        return min(now + self.policy.wait(before), deadline)

    def _time_out(self, ctx: ExecContext, first: float) -> NoReturn:
        took = f"{self.policy.timeout:g}s"
        if self.policy.soft_fail:
            raise Skip(f"sensor timed out after {took}")
        since = datetime.fromtimestamp(first, UTC).isoformat(timespec="seconds")
        raise SensorTimeout(
            f"sensor {ctx.task_id!r} not satisfied within {took} of its first poke at {since}"
        )


def _say(poke: int, text: str) -> None:
    print(f"[rota] poke {poke}: {text}", flush=True)


# --- the task nodes ----------------------------------------------------------------------------


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
        templating.check_template(text, where=f"task {task_id!r} {name}")
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


@dataclass(frozen=True, slots=True)
class FilePoker(_TextPoker):
    """Satisfied when the rendered path (a glob pattern) matches at least one path."""

    what: ClassVar[str] = "file"

    def poke(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        return bool(glob.glob(self.target(ctx), recursive=True))


class FileSensor(_BuiltIn):
    """Waits for a local path (a Jinja template and a glob pattern): ``data/{{ ds }}/*.csv``."""

    def __init__(self, task_id: str, path: str, **sensor_options: Any) -> None:
        super().__init__(task_id, FilePoker(_checked(task_id, "path", path)), sensor_options)


@dataclass(frozen=True, slots=True)
class KeyPoker(_TextPoker):
    """Satisfied when the rendered fsspec URL exists (or, with ``* ? [``, matches a key)."""

    what: ClassVar[str] = "key"

    def poke(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        import fsspec.core

        from rota.artifacts.store import storage_options

        url = self.target(ctx)
        fs, path = fsspec.core.url_to_fs(url, **storage_options(url))
        fs.invalidate_cache()  # a cached listing would say the key is still missing
        if any(c in path for c in "*?["):
            return bool(fs.glob(path))
        return bool(fs.exists(path))


class KeySensor(_BuiltIn):
    """Waits for a key on any fsspec filesystem: ``s3://bucket/{{ ds }}/_SUCCESS``.

    ``s3://`` URLs use the artifact store's endpoint (``ROTA_S3_ENDPOINT_URL``).
    """

    def __init__(self, task_id: str, url: str, **sensor_options: Any) -> None:
        super().__init__(task_id, KeyPoker(_checked(task_id, "url", url)), sensor_options)


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

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = FlowBuilder.current()
        if builder is None:
            return self.fn(*args, **kwargs)
        options = dict(self.options)
        if not self._takes_task_id and "task_id" in kwargs:
            options["task_id"] = kwargs.pop("task_id")
        task_id = options.pop("task_id", None) or builder.auto_id(self.__name__)
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


# --- sensors on the metadata store -------------------------------------------------------------

_STORES: dict[str, Store] = {}
_STORES_LOCK = threading.Lock()


def _store(ctx: ExecContext) -> Store:
    """The metadata store of *ctx*, opened once per process and URL.

    Raises:
        StoreError: the attempt has no store URL, or the store cannot be opened.
    """
    from rota.errors import StoreError
    from rota.store.sql import open_store

    if not ctx.store_url:
        raise StoreError(
            f"task {ctx.task_id!r}: the sensor reads the metadata store, but got no store URL"
        )
    with _STORES_LOCK:
        store = _STORES.get(ctx.store_url)
        if store is None:
            store = _STORES[ctx.store_url] = open_store(ctx.store_url)
    return store


def close_sensor_stores() -> None:
    """Close the metadata stores sensors opened in this process."""
    with _STORES_LOCK:
        for store in _STORES.values():
            store.close()
        _STORES.clear()


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class FlowRunPoker:
    """Satisfied when *flow* has a run for this run's logical date - *delta* in one of *states*."""

    flow: str
    states: tuple[str, ...]
    delta: timedelta

    def _date(self, ctx: ExecContext) -> datetime:
        if ctx.logical_date is None:
            raise RotaError(f"task {ctx.task_id!r}: the run has no logical date to wait for")
        return _aware(ctx.logical_date) - self.delta

    def poke(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        """Whether the run is in an accepted state.

        Raises:
            UpstreamRunFailed: the run ended in another state (and ``failed`` is not accepted).
        """
        when = self._date(ctx)
        runs = _store(ctx).runs_for_dates(self.flow, when, when)
        if any(r.state.value in self.states for r in runs):
            return True
        ended = [r for r in runs if r.state in _ENDED]
        if ended and "failed" not in self.states:
            raise UpstreamRunFailed(
                f"run {ended[0].run_id} of flow {self.flow!r} for {when.isoformat()} ended "
                f"{ended[0].state.value}, not {' or '.join(self.states)}"
            )
        return False

    def target(self, ctx: ExecContext) -> str:
        wanted = " or ".join(self.states)
        return f"a {wanted} run of flow {self.flow!r} for {self._date(ctx).isoformat()}"

    def describe(self) -> str:
        return f"flow {self.flow} ({', '.join(self.states)})"

    def code_hash(self) -> str:
        return digest("flow_run", self.flow, repr(self.states), repr(self.delta))


class FlowRunSensor(_BuiltIn):
    """Waits for a run of another flow for this run's logical date minus *execution_delta*.

    Raises:
        DefinitionError: *flow* is empty, a state is not a run state, or the delta is not a
            timedelta.
    """

    def __init__(
        self,
        task_id: str,
        flow: str,
        *,
        states: Iterable[str] = ("success",),
        execution_delta: timedelta = timedelta(0),
        **sensor_options: Any,
    ) -> None:
        if not isinstance(flow, str) or not flow.strip():
            raise DefinitionError(f"task {task_id!r}: flow must be a flow name")
        wanted = (states,) if isinstance(states, str) else tuple(states)
        known = {s.value for s in RunState}
        for state in wanted:
            if state not in known:
                choices = ", ".join(sorted(known))
                raise DefinitionError(f"task {task_id!r}: unknown run state {state!r} ({choices})")
        if not wanted:
            raise DefinitionError(f"task {task_id!r}: states must name at least one run state")
        if not isinstance(execution_delta, timedelta):
            raise DefinitionError(f"task {task_id!r}: execution_delta must be a timedelta")
        poker = FlowRunPoker(flow, tuple(str(s) for s in wanted), execution_delta)
        super().__init__(task_id, poker, sensor_options)


@dataclass(frozen=True, slots=True)
class DatasetPoker(_TextPoker):
    """Satisfied when the dataset has a version newer than the run's data interval start."""

    what: ClassVar[str] = "dataset"

    def poke(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        found = _store(ctx).new_dataset_versions([self.text], _since(ctx))
        return found.get(self.text, 0) > 0

    def target(self, ctx: ExecContext) -> str:
        return f"a version of dataset {self.text} after {_since(ctx).isoformat()}"


def _since(ctx: ExecContext) -> datetime:
    return _aware(ctx.data_interval_start or ctx.logical_date or _EPOCH)


class DatasetSensor(_BuiltIn):
    """Waits for a new version of *dataset* since the run's data interval start.

    Raises:
        DefinitionError: *dataset* is neither a Dataset nor a URI.
    """

    def __init__(self, task_id: str, dataset: Dataset | str, **sensor_options: Any) -> None:
        found = Dataset(dataset) if isinstance(dataset, str) else dataset
        if not isinstance(found, Dataset):
            raise DefinitionError(f"task {task_id!r}: dataset must be a Dataset or a URI")
        super().__init__(task_id, DatasetPoker(found.uri), sensor_options)


__all__ = [
    "DatasetSensor",
    "FileSensor",
    "FlowRunSensor",
    "KeySensor",
    "PythonSensor",
    "Sensor",
    "SensorOp",
    "SensorPolicy",
    "UpstreamRunFailed",
    "close_sensor_stores",
    "sensor",
]
