"""The validated graph of one flow, and the ready-set counter that drives a run.

``Dag`` is a pure value: task specs, edges, parameters. ``ReadySet`` is graphlib's idea for our
states: a per-task count of unfinished upstreams, updated on each completion, so a whole run costs
O(edges) rather than a rescan of every task each step (DESIGN.md, invariant 4).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, Protocol, runtime_checkable

from rota.errors import CycleError, DefinitionError
from rota.model.callbacks import NO_CALLBACKS, Callbacks
from rota.model.datasets import Dataset
from rota.model.policies import CachePolicy, RetryPolicy, TriggerRule, UpstreamTally, decide
from rota.model.states import TERMINAL, TaskState

TASK_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

TASK_ID_MAX: Final = 180
"""The longest task id (and flow name), in characters (bytes: ids are ASCII).

A task id becomes a file or folder name, and most file systems allow 255 bytes per name. The
longest name Rota derives from an id is an output's temporary file on an object store:
``.<id>@<map index>.parquet.<32 hex digits>.tmp``, 66 bytes beyond the id with a map index as
long as any Python list allows (19 digits); a local output's temporary file (``mkstemp``, 8
random characters), a checkpoint and a log folder are shorter. 255 - 66 = 189 leaves a margin.
"""

CALLBACKS_LOG: Final = "callbacks.log"
"""The file in ``logs/<run>/``, beside the runs' task folders, where failed callbacks are logged."""

RESERVED_TASK_IDS: Final = frozenset({CALLBACKS_LOG})
"""Names of the files Rota keeps beside the task folders of a run (``logs/<run>/``,
``artifacts/<run>/``, ``checkpoints/<run>/``); temporary files start with a dot, which no id
does. Compared case-insensitively, since ``ROTA_HOME`` may be on a case-insensitive file system
(macOS, Windows)."""


def check_name(value: object, *, what: str) -> str:
    """Return *value* if it can name a task or a flow (and so a file).

    Raises:
        DefinitionError: not a string, not matching TASK_ID_PATTERN, containing "..", or longer
            than TASK_ID_MAX.
    """
    if not isinstance(value, str) or not TASK_ID_PATTERN.fullmatch(value) or ".." in value:
        raise DefinitionError(
            f"invalid {what} {_shown(value)}: use letters, digits, '_', '.', '-' "
            f"(first character a letter, digit or '_'; at most {TASK_ID_MAX}; no '..')"
        )
    if len(value) > TASK_ID_MAX:
        raise DefinitionError(
            f"{what} {_shown(value)} is {len(value)} characters long; at most {TASK_ID_MAX}, so "
            "that every file name Rota makes from it fits in the 255 bytes file systems allow"
        )
    return value


def check_task_id(task_id: object, *, what: str = "task id") -> str:
    """Return *task_id* if it is a valid task id.

    Raises:
        DefinitionError: as :func:`check_name`, or it is the name of a file Rota keeps beside
            the task folders (:data:`RESERVED_TASK_IDS`, in any case).
    """
    value = check_name(task_id, what=what)
    if value.casefold() in RESERVED_TASK_IDS:
        raise DefinitionError(
            f"{what} {value!r} is reserved: Rota keeps a file of that name beside the task "
            "folders of every run (names are compared ignoring case)"
        )
    return value


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:50]}...{text[-5:]}"


@runtime_checkable
class Operator(Protocol):
    """What a task does when it runs; implemented in ``rota.operators``."""

    @property
    def kind(self) -> str:
        """A short name of the operator type (``python``, ``shell``)."""

    def describe(self) -> str:
        """A short human description (a function name, a command)."""

    def code_hash(self) -> str:
        """A digest of the code this operator runs, for flows' code hashes and resume checks."""


@dataclass(frozen=True, slots=True)
class Ref:
    """A placeholder in a task's arguments for the output of task *task_id*."""

    task_id: str


def refs_in(value: object) -> Iterator[str]:
    """Yield the task ids of every :class:`Ref` inside *value* (lists, tuples, dicts, sets)."""
    if isinstance(value, Ref):
        yield value.task_id
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from refs_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from refs_in(item)


def resolve(value: Any, outputs: Mapping[str, Any]) -> Any:
    """Replace every :class:`Ref` inside *value* with the output it names."""
    if isinstance(value, Ref):
        return outputs[value.task_id]
    if isinstance(value, list):
        return [resolve(v, outputs) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve(v, outputs) for v in value)
    if isinstance(value, dict):
        return {k: resolve(v, outputs) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task of a flow: what it runs, with which arguments, after which tasks."""

    id: str
    op: Operator
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    upstream: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: timedelta | None = None
    tags: frozenset[str] = frozenset()
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    callbacks: Callbacks = NO_CALLBACKS
    map_args: tuple[str, ...] = ()
    """Names of keyword arguments mapped over: one task instance per element, at run time."""
    cache: CachePolicy | None = None
    serializer: str | None = None
    """How to store the output (``json``, ``npy``, ``parquet``, ...); None: chosen by type."""
    outlets: tuple[Dataset, ...] = ()
    inlets: tuple[Dataset, ...] = ()

    @property
    def mapped(self) -> bool:
        return bool(self.map_args)

    @property
    def data_inputs(self) -> tuple[str, ...]:
        """Upstream ids whose outputs this task reads (a subset of ``upstream``)."""
        seen: dict[str, None] = {}
        for tid in refs_in(self.args):
            seen.setdefault(tid, None)
        for tid in refs_in(self.kwargs):
            seen.setdefault(tid, None)
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """A flow parameter: its name and default (``REQUIRED`` when it has none)."""

    name: str
    default: Any


REQUIRED: Final = object()


class Dag:
    """A validated, acyclic graph of task specs. Build it with :meth:`Dag.build`."""

    __slots__ = (
        "_downstream",
        "_order",
        "callbacks",
        "name",
        "param_defaults",
        "params",
        "schedule",
        "tasks",
    )

    def __init__(
        self,
        name: str,
        tasks: Mapping[str, TaskSpec],
        params: Mapping[str, Any],
        order: tuple[str, ...],
        downstream: Mapping[str, tuple[str, ...]],
        callbacks: Callbacks = NO_CALLBACKS,
        schedule: tuple[Dataset, ...] = (),
        param_defaults: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.callbacks = callbacks
        self.schedule = schedule
        self.tasks = dict(tasks)
        self.params = dict(params)
        self.param_defaults = dict(param_defaults or {})
        """The flow's parameter defaults (those without one left out): the store marks a secret
        parameter that kept its default, which a resume takes from the flow again."""
        self._order = order
        self._downstream = dict(downstream)

    @classmethod
    def build(
        cls,
        name: str,
        specs: Iterable[TaskSpec],
        params: Mapping[str, Any],
        callbacks: Callbacks = NO_CALLBACKS,
        schedule: tuple[Dataset, ...] = (),
        param_defaults: Mapping[str, Any] | None = None,
    ) -> Dag:
        """Validate *specs* and return the graph; *callbacks* are the run-level ones.

        Raises:
            DefinitionError: an invalid or duplicate id, or an upstream that is not in the flow.
            CycleError: the edges form a cycle (the error names it).
        """
        tasks: dict[str, TaskSpec] = {}
        folded: dict[str, str] = {}
        for spec in specs:
            check_task_id(spec.id)
            if spec.id in tasks:
                raise DefinitionError(f"duplicate task id {spec.id!r} in flow {name!r}")
            twin = folded.setdefault(spec.id.casefold(), spec.id)
            if twin != spec.id:
                raise DefinitionError(
                    f"task ids {twin!r} and {spec.id!r} in flow {name!r} differ only in case: "
                    "on a case-insensitive file system (macOS, Windows) their files would be one"
                )
            tasks[spec.id] = spec
        downstream: dict[str, list[str]] = {tid: [] for tid in tasks}
        for spec in tasks.values():
            for up in spec.upstream:
                if up not in tasks:
                    raise DefinitionError(
                        f"task {spec.id!r} depends on {up!r}, which is not in flow {name!r}"
                    )
                downstream[up].append(spec.id)
        order = _topological_order(tasks, downstream, flow=name)
        frozen = {tid: tuple(ds) for tid, ds in downstream.items()}
        return cls(name, tasks, params, order, frozen, callbacks, schedule, param_defaults)

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def order(self) -> tuple[str, ...]:
        """Task ids in a topological order (upstreams first), stable for equal graphs."""
        return self._order

    def downstream(self, task_id: str) -> tuple[str, ...]:
        """Ids of the tasks that directly depend on *task_id*."""
        return self._downstream[task_id]

    def edges(self) -> Iterator[tuple[str, str]]:
        """Every (upstream, downstream) pair, in topological order of the upstream."""
        for tid in self._order:
            for down in self._downstream[tid]:
                yield tid, down


def _topological_order(
    tasks: Mapping[str, TaskSpec], downstream: Mapping[str, list[str]], *, flow: str
) -> tuple[str, ...]:
    """Kahn's algorithm; on a cycle, find and name one with a depth-first search."""
    indegree = {tid: len(spec.upstream) for tid, spec in tasks.items()}
    ready = deque(tid for tid, n in indegree.items() if n == 0)
    order: list[str] = []
    while ready:
        tid = ready.popleft()
        order.append(tid)
        for down in downstream[tid]:
            indegree[down] -= 1
            if indegree[down] == 0:
                ready.append(down)
    if len(order) != len(tasks):
        raise CycleError(_find_cycle(tasks, {t for t, n in indegree.items() if n > 0}), flow=flow)
    return tuple(order)


def _find_cycle(tasks: Mapping[str, TaskSpec], stuck: set[str]) -> list[str]:
    """Return one cycle among *stuck* tasks as a path whose last element repeats the first."""
    start = min(stuck)
    path: list[str] = []
    index: dict[str, int] = {}
    node = start
    # Every stuck node has a stuck upstream, so walking upstream edges must revisit a node.
    while node not in index:
        index[node] = len(path)
        path.append(node)
        node = min(up for up in tasks[node].upstream if up in stuck)
    cycle = [*path[index[node] :], node]
    cycle.reverse()  # walked upstream; show it in the direction the edges point
    return cycle


@dataclass(frozen=True, slots=True)
class Decision:
    """The ready set's verdict on a task whose upstreams are all finished."""

    task_id: str
    state: TaskState  # QUEUED (run it), SKIPPED or UPSTREAM_FAILED


class ReadySet:
    """Tracks, per task, the upstreams still unfinished and how the finished ones ended.

    Like ``graphlib.TopologicalSorter``: the caller takes :meth:`initial` decisions, runs tasks
    anywhere, and reports each terminal outcome to :meth:`done`, which returns the decisions that
    outcome unlocked (cascading skips and upstream failures through the graph at once).
    """

    def __init__(self, dag: Dag, finished: Mapping[str, TaskState] | None = None) -> None:
        self._dag = dag
        self._remaining = {tid: len(spec.upstream) for tid, spec in dag.tasks.items()}
        self._tally = {tid: [0, 0, 0, 0] for tid in dag.tasks}
        self._finished: dict[str, TaskState] = {}
        for tid, state in (finished or {}).items():
            self._record(tid, state)
        self._initial: list[Decision] = []
        decided: set[str] = set()
        for tid in dag.order:
            if tid in self._finished or tid in decided or self._remaining[tid]:
                continue
            verdict = self._verdict(tid)
            found = [Decision(tid, verdict)]
            if verdict is not TaskState.QUEUED:
                found.extend(self.done(tid, verdict))  # a cascade may decide later tasks too
            decided.update(d.task_id for d in found)
            self._initial.extend(found)

    def initial(self) -> list[Decision]:
        """Decisions available before anything new finishes (roots, and resumed frontiers)."""
        out, self._initial = self._initial, []
        return out

    def done(self, task_id: str, state: TaskState) -> list[Decision]:
        """Record that *task_id* ended in terminal *state*; return the decisions it unlocked.

        Raises:
            ValueError: *state* is not terminal, or *task_id* was already reported.
        """
        out: list[Decision] = []
        stack = [(task_id, state)]
        while stack:
            tid, st = stack.pop()
            for down in self._record(tid, st):
                verdict = self._verdict(down)
                out.append(Decision(down, verdict))
                if verdict is not TaskState.QUEUED:
                    stack.append((down, verdict))
        return out

    def _record(self, task_id: str, state: TaskState) -> list[str]:
        """Mark *task_id* finished; return the unfinished downstreams that became decidable."""
        if state not in TERMINAL:
            raise ValueError(f"{task_id}: {state} is not a terminal state")
        if task_id in self._finished:
            raise ValueError(f"{task_id} was already reported finished")
        self._finished[task_id] = state
        slot = _TALLY_SLOT[state]
        unlocked = []
        for down in self._dag.downstream(task_id):
            self._tally[down][slot] += 1
            self._remaining[down] -= 1
            if self._remaining[down] == 0 and down not in self._finished:
                unlocked.append(down)
        return unlocked

    def _verdict(self, task_id: str) -> TaskState:
        rule = self._dag.tasks[task_id].trigger_rule
        return decide(rule, UpstreamTally(*self._tally[task_id]))

    @property
    def finished(self) -> Mapping[str, TaskState]:
        """Terminal states reported so far (including cascaded decisions)."""
        return self._finished


_TALLY_SLOT: Final[Mapping[TaskState, int]] = {
    TaskState.SUCCESS: 0,
    TaskState.CACHED: 0,
    TaskState.FAILED: 1,
    TaskState.SKIPPED: 2,
    TaskState.UPSTREAM_FAILED: 3,
}
