"""Dynamic mapping: how many instances a mapped task gets, and what each one receives.

:class:`Mapper` fans a mapped task out when the ready set queues it, and ends it when its last
instance ends; it reads and writes the loop's :class:`~rota.engine.book.RunBook` and is given
what else it needs as callables (never the loop itself).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from rota.engine.book import Key, Output, RunBook, Settled
from rota.engine.refs import record_ref
from rota.executors.base import InputRef, StoredRef
from rota.model.dag import Dag, Ref, TaskSpec
from rota.model.states import SUCCEEDED, TaskState
from rota.operators.base import digest
from rota.store.base import AttemptRecord, NewAttempt

MAP_SOURCE_INLINE_MAX: Final = 4096
"""Bytes up to which the output of a task that a mapped task maps over is kept inline.

Every instance's spec carries its input's stored reference, and an inline output's reference
carries the output's bytes: 10,000 instances over a 30 KB list sent 300 MB through the workers'
pipes. Past this size the list is one file instead (one write, one fsync), and each worker reads
it once (its output cache). A list of this size has on the order of a thousand small elements,
so that many instances or more."""


def map_sources(dag: Dag) -> frozenset[str]:
    """The tasks whose output some mapped task of *dag* maps over."""
    return frozenset(
        value.task_id
        for spec in dag.tasks.values()
        for name in spec.map_args
        if isinstance(value := spec.kwargs[name], Ref)
    )


def inline_limit(task_id: str, sources: frozenset[str], limit: int) -> int:
    """The inline limit of *task_id*'s output: *limit*, or at most MAP_SOURCE_INLINE_MAX for a
    task in *sources* (see :func:`map_sources`)."""
    return min(limit, MAP_SOURCE_INLINE_MAX) if task_id in sources else limit


def map_length(
    spec: TaskSpec, outputs: Mapping[str, Output], lengths: Mapping[str, int | None]
) -> tuple[int, str | None]:
    """The number of instances of mapped task *spec*, or (0, why) when it cannot be mapped."""
    sizes: dict[str, int] = {}
    for name in spec.map_args:
        value = spec.kwargs[name]
        if isinstance(value, Ref):
            out = outputs.get(value.task_id)
            size = len(out) if isinstance(out, tuple) else lengths.get(value.task_id)
            if size is None:
                return 0, (
                    f"cannot map over the output of {value.task_id!r}: it is not a list or a tuple"
                )
        else:
            size = len(value)
        sizes[name] = size
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"{n}={s}" for n, s in sizes.items())
        return 0, f"mapped arguments have different lengths ({detail})"
    return next(iter(sizes.values())), None


def expand_args(
    spec: TaskSpec, index: int, outputs: Mapping[str, Output]
) -> tuple[dict[str, Any], list[InputRef]]:
    """Instance *index*'s keyword arguments, and the extra inputs its elements come from."""
    kwargs = dict(spec.kwargs)
    extra: list[InputRef] = []
    for name in spec.map_args:
        value = kwargs[name]
        if isinstance(value, Ref):
            key = f"{value.task_id}@{index}"
            out = outputs.get(value.task_id)
            if isinstance(out, tuple):
                extra.append(InputRef(key, out[index]))
            else:
                extra.append(InputRef(key, out, index=index))
            kwargs[name] = Ref(key)
        else:
            kwargs[name] = value[index]
    return kwargs, extra


@dataclass
class MapState:
    """The instances of one mapped task: how many are left, failed, and their outputs."""

    size: int
    left: int = -1
    failed: list[int] = field(default_factory=list)
    refs: dict[int, StoredRef | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.left = self.size

    def record(self, index: int, state: TaskState, ref: StoredRef | None) -> None:
        self.left -= 1
        if state is TaskState.FAILED:
            self.failed.append(index)
        self.refs[index] = ref if state in (TaskState.SUCCESS, TaskState.CACHED) else None

    def content_hash(self) -> str:
        """One hash for the list of the instances' outputs."""
        refs = (self.refs.get(i) for i in range(self.size))
        return digest(*(str(r.content_hash if r else None) for r in refs))

    def outputs(self) -> tuple[StoredRef | None, ...]:
        return tuple(self.refs.get(i) for i in range(self.size))

    def describe_failures(self) -> str:
        shown = ", ".join(str(i) for i in sorted(self.failed)[:10])
        more = f" and {len(self.failed) - 10} more" if len(self.failed) > 10 else ""
        return f"{len(self.failed)} of {self.size} mapped instances failed (index {shown}{more})"


AddAttempts = Callable[[Sequence[NewAttempt]], list[AttemptRecord]]
"""Insert new attempts in one transaction, once every change queued before is committed."""


@dataclass(slots=True, eq=False)
class Mapper:
    """The mapped tasks of one run: their fan-out and their end.

    Args:
        book: the run's attempts, states and outputs (the instances' are added to it).
        dag: the run's graph.
        now: the clock.
        add_attempts: inserts the instances' attempts (one transaction per expansion).
        enqueue: queues an instance (which may end it at once: a cache hit).
        note_datasets: records, once committed, the datasets of a mapped task that succeeded.
        settled: told when a mapped task as a whole ends.
    """

    book: RunBook
    dag: Dag
    now: Callable[[], datetime]
    add_attempts: AddAttempts
    enqueue: Callable[[Key], None]
    note_datasets: Callable[[str], None]
    settled: Settled
    maps: dict[str, MapState] = field(default_factory=dict)

    def instance_done(self, tid: str, index: int, new: TaskState, ref: StoredRef | None) -> None:
        """Count instance *index* of *tid*, ended in *new* with output *ref*; end the mapped
        task when it was its last instance."""
        ms = self.maps[tid]
        ms.record(index, new, ref)
        if ms.left:
            return
        final = TaskState.FAILED if ms.failed else TaskState.SUCCESS
        if final is TaskState.SUCCESS:
            self.note_datasets(tid)
        self._end(tid, final)

    def expand(self, tid: str) -> None:
        """Fan mapped task *tid* out into one instance per element of its mapped inputs."""
        book, key, now = self.book, (tid, -1), self.now()
        book.change(key, TaskState.QUEUED, {"queued_at": now})
        book.change(key, TaskState.RUNNING, {"started_at": now})
        size, problem = map_length(self.dag.tasks[tid], book.outputs, book.lengths)
        if problem is not None:
            fields = {"finished_at": now, "error_type": "MapError", "error_message": problem}
            book.change(key, TaskState.FAILED, fields)
            self.settled(tid, TaskState.FAILED)
            return
        ms = self.maps[tid] = MapState(size)
        self._add_missing(tid, size)
        todo: list[int] = []
        for i in range(size):
            rec = book.attempt[(tid, i)]
            if rec.state in SUCCEEDED:
                ms.record(i, rec.state, record_ref(rec))
            else:
                todo.append(i)
        if not todo:  # no elements, or all reused
            self._end(tid, TaskState.SUCCESS)
            return
        # Enqueueing an instance can finish it at once (a cache hit): the last one to finish ends
        # the mapped task in instance_done(), so nothing may end it again here.
        for i in todo:
            self.enqueue((tid, i))

    def _add_missing(self, tid: str, size: int) -> None:
        """Create the attempts of the instances of *tid* the store does not have (all of them,
        but on a resume), in one transaction."""
        book = self.book
        missing = [i for i in range(size) if (tid, i) not in book.attempt]
        if not missing:
            return
        spec = self.dag.tasks[tid]
        kind, code = spec.op.kind, spec.op.code_hash()
        new = [NewAttempt(book.run_id, tid, 1, kind, code, i) for i in missing]
        for rec in self.add_attempts(new):
            book.load((tid, rec.map_index), rec)

    def _end(self, tid: str, final: TaskState) -> None:
        """End mapped task *tid* as a whole: its output is the list of its instances'."""
        ms, book = self.maps[tid], self.book
        book.outputs[tid] = ms.outputs()
        book.hashes[tid] = ms.content_hash()
        fields: dict[str, Any] = {
            "finished_at": self.now(),
            "output_length": ms.size,
            "output_hash": book.hashes[tid],
        }
        if ms.failed:
            fields.update(error_type="MappedInstancesFailed", error_message=ms.describe_failures())
        book.change((tid, -1), final, fields)
        self.settled(tid, final)
