"""The validated graph of one flow, and the ready-set counter that drives a run.

``Dag`` is a pure value: task specs, edges, parameters. ``ReadySet`` is graphlib's idea for our
states: per task, counts of its upstreams by outcome, updated on each completion and read by the
task's trigger rule, so a whole run costs O(edges) rather than a rescan of every task each step
(DESIGN.md, invariant 4).
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
from rota.model.pools import DEFAULT_POOL_USE, PoolUse
from rota.model.priority import DEFAULT_PRIORITY, Priority
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
    pool: PoolUse = DEFAULT_POOL_USE
    """The pool whose slots an attempt takes while queued or running, and how many."""
    priority: Priority = DEFAULT_PRIORITY
    """The task's priority weight and weight rule (:mod:`rota.model.priority`)."""

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
        "max_active_tasks",
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
        max_active_tasks: int | None = None,
    ) -> None:
        self.name = name
        self.max_active_tasks = max_active_tasks
        """The most attempts of one run queued or running at once (None: no limit but the
        executor's workers and the pools), as Airflow's per-run ``max_active_tasks``."""
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
        max_active_tasks: int | None = None,
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
        return cls(
            name, tasks, params, order, frozen, callbacks, schedule, param_defaults,
            max_active_tasks,
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def order(self) -> tuple[str, ...]:
        """Task ids in a topological order (upstreams first), stable for equal graphs."""
        return self._order

    def downstream(self, task_id: str) -> tuple[str, ...]:
        """Ids of the tasks that directly depend on *task_id*."""
        return self._downstream[task_id]

    @property
    def leaves(self) -> tuple[str, ...]:
        """Ids of the tasks nothing depends on, in topological order: they decide a run's state."""
        return tuple(tid for tid in self._order if not self._downstream[tid])

    def edges(self) -> Iterator[tuple[str, str]]:
        """Every (upstream, downstream) pair, in topological order of the upstream."""
        for tid in self._order:
            for down in self._downstream[tid]:
                yield tid, down


LEAF_SUCCESS: Final = frozenset({TaskState.SUCCESS, TaskState.CACHED, TaskState.SKIPPED})
"""Leaf states that let a run succeed (Airflow's ``State.success_states``, with cached)."""


def run_succeeded(dag: Dag, state_of: Mapping[str, TaskState]) -> bool:
    """Whether a finished run of *dag* whose tasks ended as *state_of* succeeded.

    Airflow's rule (``DagRun.update_state``): the leaves decide. The run succeeds when every leaf
    task succeeded (or was cached) or was skipped, and fails when a leaf failed, is
    upstream_failed or did not end; a failed task that a fallback leaf handled (``one_failed``,
    ``all_done``) does not fail the run.
    """
    return all(state_of.get(tid) in LEAF_SUCCESS for tid in dag.leaves)


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
    """The ready set's verdict on a task: run it, or it ends without running, and why."""

    task_id: str
    state: TaskState  # QUEUED (run it), SKIPPED or UPSTREAM_FAILED
    reason: str = field(default="", compare=False)
    """Why a task ends without running (its rule and the upstream counts, or a branch's choice);
    commentary, so decisions compare by task, state and cause only."""
    chosen: bool = False
    """Skipped by a branch or short-circuit task's choice, not by its own trigger rule."""


class ReadySet:
    """Decides, completion by completion, which tasks run, are skipped or are upstream_failed.

    Like ``graphlib.TopologicalSorter``: the caller takes :meth:`initial` decisions, runs tasks
    anywhere, and reports each terminal outcome to :meth:`done`, which returns the decisions that
    outcome made possible. Per task it keeps counts of its upstreams by outcome (success, failed,
    upstream_failed, skipped), so each completion costs O(its out-degree) and a whole run
    O(edges) (DESIGN.md, invariant 4).

    A task is decided at the first completion that determines its rule's outcome, as Airflow does
    (a ``one_failed`` task runs at the first failure, an ``all_success`` one is upstream_failed at
    once); later completions of its other upstreams change nothing about it. A task that ends
    without running ends at once, and that completion counts for its own downstreams in turn.
    """

    def __init__(self, dag: Dag, finished: Mapping[str, TaskState] | None = None) -> None:
        self._dag = dag
        self._counts = {tid: [0, 0, 0, 0] for tid in dag.tasks}
        self._finished: dict[str, TaskState] = {}
        self._decided: set[str] = set()
        for tid, state in (finished or {}).items():
            self._decided.add(tid)
            self._record(tid, state)
        self._initial: list[Decision] = []
        for tid in dag.order:
            self._initial.extend(self._settle([tid]))

    def initial(self) -> list[Decision]:
        """Decisions available before anything new finishes (roots, ``always`` tasks, resumed
        frontiers)."""
        out, self._initial = self._initial, []
        return out

    def done(self, task_id: str, state: TaskState) -> list[Decision]:
        """Record that *task_id* ended in terminal *state*; return the decisions it made possible.

        Raises:
            ValueError: *state* is not terminal, or *task_id* was already reported.
        """
        self._check_new(task_id, state)
        self._decided.add(task_id)
        return self._settle(self._record(task_id, state))

    def skip(self, task_ids: Iterable[str], reason: str) -> list[Decision]:
        """Skip the undecided tasks among *task_ids* now, whatever their upstreams (a branch's or a
        short-circuit's choice, as Airflow's ``SkipMixin``); return those skips and what they made
        possible. A task already decided (running, or ended) is left as it is.
        """
        targets = [tid for tid in dict.fromkeys(task_ids) if tid not in self._decided]
        # All are decided first, so that the skip of one cannot make another run by its rule.
        self._decided.update(targets)
        out = [Decision(tid, TaskState.SKIPPED, reason, chosen=True) for tid in targets]
        for tid in targets:
            out.extend(self._settle(self._record(tid, TaskState.SKIPPED)))
        return out

    def is_decided(self, task_id: str) -> bool:
        """Whether *task_id* has a verdict (queued, running or ended)."""
        return task_id in self._decided

    @property
    def finished(self) -> Mapping[str, TaskState]:
        """Terminal states reported so far (including cascaded decisions)."""
        return self._finished

    def _check_new(self, task_id: str, state: TaskState) -> None:
        if state not in TERMINAL:
            raise ValueError(f"{task_id}: {state} is not a terminal state")
        if task_id in self._finished:
            raise ValueError(f"{task_id} was already reported finished")

    def _record(self, task_id: str, state: TaskState) -> list[str]:
        """Mark *task_id* finished and count it for its downstreams; return the undecided ones."""
        self._check_new(task_id, state)
        self._finished[task_id] = state
        slot = _TALLY_SLOT[state]
        undecided = []
        for down in self._dag.downstream(task_id):
            self._counts[down][slot] += 1
            if down not in self._decided:
                undecided.append(down)
        return undecided

    def _settle(self, candidates: list[str]) -> list[Decision]:
        """Decide what *candidates* allow now; a task ending without running cascades at once."""
        out: list[Decision] = []
        stack = list(reversed(candidates))
        while stack:
            tid = stack.pop()
            if tid in self._decided:
                continue
            spec = self._dag.tasks[tid]
            tally = UpstreamTally(len(spec.upstream), *self._counts[tid])
            verdict = decide(spec.trigger_rule, tally)
            if verdict is None:
                continue
            self._decided.add(tid)
            if verdict is TaskState.QUEUED:
                out.append(Decision(tid, verdict))
                continue
            out.append(
                Decision(tid, verdict, f"trigger rule {spec.trigger_rule}: {tally.describe()}")
            )
            stack.extend(reversed(self._record(tid, verdict)))
        return out


_TALLY_SLOT: Final[Mapping[TaskState, int]] = {
    # the order of UpstreamTally's counts after ``upstreams``
    TaskState.SUCCESS: 0,
    TaskState.CACHED: 0,
    TaskState.FAILED: 1,
    TaskState.SKIPPED: 2,
    TaskState.UPSTREAM_FAILED: 3,
}
