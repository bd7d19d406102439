"""The Executor protocol and the values that cross it.

An executor runs attempts and reports what happened to them. It knows nothing of scheduling and
never touches the store: the engine decides what to submit and commits what it hears back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from typing import Any, Final, Protocol, cast

from rota.model.branching import Choice
from rota.model.dag import Operator


class _ByPosition:
    """A dataclass whose every field its ``__init__`` takes in order, pickled as its class and
    its fields' values: several times faster than a slots dataclass's own pickling, which asks
    ``dataclasses.fields`` for every object. These cross a worker's pipe once or twice per
    attempt."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        cls = type(self)
        return cls, _field_values(cls)(self)


_VALUES: dict[type, Callable[[Any], tuple[Any, ...]]] = {}
"""Per class, what gives the values of its fields in order."""


def _field_values(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """What gives the values of dataclass *cls*'s fields, in order (made once per class)."""
    values = _VALUES.get(cls)
    if values is None:
        values = _VALUES[cls] = attrgetter(*(f.name for f in fields(cast(Any, cls))))
    return values


@dataclass(frozen=True, slots=True)
class StoredRef(_ByPosition):
    """A stored output: its URI in the artifact store, how it was serialized, its content hash."""

    uri: str
    serializer: str
    content_hash: str | None = None
    size: int = 0
    inline: bytes | None = None
    """The output's bytes, for an ``inline:`` output kept in its attempt's row."""


@dataclass(frozen=True, slots=True)
class InputRef(_ByPosition):
    """Where an upstream's output is: a stored object, or nothing (the upstream returned None)."""

    task_id: str
    ref: StoredRef | None
    index: int | None = None
    """Take element *index* of the stored output (an instance of a mapped task)."""
    parts: tuple[StoredRef | None, ...] | None = None
    """The outputs of a mapped task's instances: the input is their list, in order."""


@dataclass(frozen=True, slots=True)
class AttemptSpec(_ByPosition):
    """Everything a worker needs to run one attempt; picklable, so it can cross processes.

    ``op`` is shipped separately by process executors (cloudpickled once per worker and operator).
    ``modules`` are (module name, file path) pairs to import first, so that objects the flow file
    defines unpickle by reference.
    """

    attempt_id: int
    run_id: str
    flow: str
    task_id: str
    map_index: int
    try_number: int
    op: Operator
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    inputs: tuple[InputRef, ...]
    artifacts: str
    """The artifact store's root (a folder or an fsspec URL) where the output goes."""
    log_path: str
    params: Mapping[str, Any] = field(default_factory=dict)
    modules: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    checkpoint_path: str = ""
    serializer: str | None = None
    logical_date: datetime | None = None
    """The run's logical date (its schedule interval's start; the creation time otherwise)."""
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None
    first_poke_at: float | None = None
    """For a sensor: epoch seconds of its first poke in this run (its timeout counts from it)."""
    pokes: int = 0
    """For a sensor: how many pokes earlier dispatches of this attempt made (for back-off)."""
    resources: Mapping[str, float] = field(default_factory=dict)
    """What the attempt needs of its worker (``{"GPU": 1, "memory": 4e9}``): Dask worker
    resources; executors on one machine ignore them."""
    downstream: tuple[str, ...] = ()
    """Ids of the task's direct downstream tasks, among which a branch task chooses."""
    inline_limit: int = 0
    """An output of at most this many bytes comes back in the outcome (the engine keeps it in
    the attempt's row) instead of a file; 0: always a file."""


_SPEC_FIELDS: Final = tuple(f.name for f in fields(AttemptSpec))
_OP_AT: Final = _SPEC_FIELDS.index("op")


def spec_values(spec: AttemptSpec) -> tuple[Any, ...]:
    """The fields of *spec* in order, its operator left out (None): what a process executor
    pickles per attempt, the operator going to each worker once. A tuple pickles several times
    faster than the dataclass, whose pickling asks ``dataclasses.fields`` each time."""
    values = list(_field_values(AttemptSpec)(spec))
    values[_OP_AT] = None
    return tuple(values)


def spec_from_values(values: tuple[Any, ...], op: Operator) -> AttemptSpec:
    """The spec of :func:`spec_values`' *values*, with its operator *op*.

    Raises:
        TypeError: *values* are not a spec's (another version's worker, a damaged message).
    """
    if len(values) != len(_SPEC_FIELDS):
        raise TypeError(f"an attempt spec has {len(_SPEC_FIELDS)} fields, not {len(values)}")
    make: Callable[..., AttemptSpec] = AttemptSpec  # positional: the fields' order
    return make(*values[:_OP_AT], op, *values[_OP_AT + 1 :])


@dataclass(frozen=True, slots=True)
class ErrorInfo(_ByPosition):
    """Why an attempt failed, as text: it crosses processes and goes to the store."""

    type_name: str
    message: str
    traceback: str = ""
    exit_code: int | None = None
    mro: tuple[str, ...] = ()
    """Qualified names of the error's classes, most derived first (retry policies match these)."""


TIMEOUT_MRO = ("rota.errors.TaskTimeout", "rota.errors.RotaError", "builtins.Exception")
LOST_MRO = ("rota.errors.WorkerLost", "rota.errors.RotaError", "builtins.Exception")


def timeout_error(seconds: float) -> ErrorInfo:
    """The error of an attempt ended because it ran past its timeout."""
    return ErrorInfo("TaskTimeout", f"timed out after {seconds:g}s", mro=TIMEOUT_MRO)


@dataclass(frozen=True, slots=True)
class AttemptStarted(_ByPosition):
    """A worker began attempt *attempt_id* at *at* (epoch seconds)."""

    attempt_id: int
    at: float
    worker: str


@dataclass(frozen=True, slots=True)
class AttemptOutcome(_ByPosition):
    """How attempt *attempt_id* ended. When ``ok``, its output (if any) is already durable."""

    attempt_id: int
    ok: bool
    started_at: float
    finished_at: float
    worker: str
    output_path: str | None = None
    """The URI of the stored output (None when the task returned None)."""
    output_size: int | None = None
    output_length: int | None = None
    """len() of a list or tuple output: what a downstream .map() fans out over."""
    output_hash: str | None = None
    """BLAKE2b of the stored bytes: the output's content, for cache keys and integrity."""
    output_serializer: str | None = None
    output_inline: bytes | None = None
    """The output's bytes when they are small enough to be kept in the attempt's row (its
    ``output_path`` is then an ``inline:`` name): committed with the success."""
    log_path: str | None = None
    error: ErrorInfo | None = None
    skipped: bool = False
    reschedule_at: float | None = None
    """A sensor in ``reschedule`` mode was not satisfied: poke again at this epoch time, holding
    no worker meanwhile (the attempt goes to ``sensing``; no try is used up)."""
    choice: Choice | None = None
    """What a branch or short-circuit task that succeeded chose: the engine skips the others."""


AttemptEvent = AttemptStarted | AttemptOutcome


class Executor(Protocol):
    """Runs task attempts somewhere. Knows nothing of scheduling or the store."""

    name: str

    def capacity(self) -> int:
        """Free slots now; the engine submits at most this many before polling again."""

    def submit(self, attempt: AttemptSpec) -> None:
        """Start *attempt* (or queue it inside the executor's capacity)."""

    def poll(self, timeout: float) -> list[AttemptEvent]:
        """Events since the last call, waiting at most *timeout* seconds for the first one.

        With nothing running it waits the whole *timeout* (it never returns at once), so the
        engine blocks here until its next due time: waiting must not burn a CPU core.
        """

    def close(self, *, cancel: bool = False) -> None:
        """Stop the workers; with *cancel*, do not wait for running attempts."""
