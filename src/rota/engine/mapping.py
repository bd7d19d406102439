"""Dynamic mapping: how many instances a mapped task gets, and what each one receives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rota.engine.refs import outcome_ref, record_ref
from rota.executors.base import AttemptOutcome, InputRef, StoredRef
from rota.model.dag import Ref, TaskSpec
from rota.model.states import SUCCEEDED, TaskState
from rota.operators.base import digest
from rota.store.base import NewAttempt

if TYPE_CHECKING:
    from rota.engine.loop import RunLoop

Output = StoredRef | None | tuple[StoredRef | None, ...]


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


def instance_done(
    loop: RunLoop, tid: str, index: int, new: TaskState, out: AttemptOutcome | None
) -> None:
    """Count a mapped task's instance; end the mapped task when its last instance ends."""
    ms = loop.maps[tid]
    if out is not None:
        ms.record(index, new, outcome_ref(out))
    if ms.left:
        return
    final = TaskState.FAILED if ms.failed else TaskState.SUCCESS
    if final is TaskState.SUCCESS:
        loop.note_datasets(tid)
    loop.outputs[tid] = ms.outputs()
    loop.hashes[tid] = ms.content_hash()
    fields: dict[str, Any] = {
        "finished_at": loop.r.clock.now(),
        "output_length": ms.size,
        "output_hash": loop.hashes[tid],
    }
    if ms.failed:
        fields.update(error_type="MappedInstancesFailed", error_message=ms.describe_failures())
    loop.change((tid, -1), final, fields)
    loop.apply_decisions(loop.ready_set.done(tid, final))


def expand(loop: RunLoop, tid: str) -> None:
    """Fan mapped task *tid* out into one instance per element of its mapped inputs."""
    key = (tid, -1)
    now = loop.r.clock.now()
    loop.change(key, TaskState.QUEUED, {"queued_at": now})
    loop.change(key, TaskState.RUNNING, {"started_at": now})
    size, problem = map_length(loop.dag.tasks[tid], loop.outputs, loop.lengths)
    if problem is not None:
        fields = {"finished_at": now, "error_type": "MapError", "error_message": problem}
        loop.change(key, TaskState.FAILED, fields)
        loop.apply_decisions(loop.ready_set.done(tid, TaskState.FAILED))
        return
    ms = loop.maps[tid] = MapState(size)
    missing = [i for i in range(size) if (tid, i) not in loop.attempt]
    if missing:
        spec = loop.dag.tasks[tid]
        loop.flush()
        loop.writer.flush()
        new = [
            NewAttempt(loop.run_rec.run_id, tid, 1, spec.op.kind, spec.op.code_hash(), i)
            for i in missing
        ]
        for rec in loop.r.store.add_attempts([], new, at=now):
            loop.attempt[(tid, rec.map_index)] = rec
            loop.state[(tid, rec.map_index)] = rec.state
    todo: list[int] = []
    for i in range(size):
        rec = loop.attempt[(tid, i)]
        if rec.state in SUCCEEDED:
            ms.record(i, rec.state, record_ref(rec))
        else:
            todo.append(i)
    if not todo:
        instance_done_all(loop, tid)
        return
    # Enqueueing an instance can finish it at once (a cache hit): the last one to finish ends
    # the mapped task in instance_done(), so nothing may end it again here.
    for i in todo:
        loop.enqueue((tid, i))


def instance_done_all(loop: RunLoop, tid: str) -> None:
    """A mapped task with nothing to run (no elements, or all reused): end it now."""
    ms = loop.maps[tid]
    loop.outputs[tid] = ms.outputs()
    loop.hashes[tid] = ms.content_hash()
    fields = {
        "finished_at": loop.r.clock.now(),
        "output_length": ms.size,
        "output_hash": loop.hashes[tid],
    }
    loop.change((tid, -1), TaskState.SUCCESS, fields)
    loop.apply_decisions(loop.ready_set.done(tid, TaskState.SUCCESS))
