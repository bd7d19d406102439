"""What a run made from Python returns: its state, tasks, attempts, and its outputs on request.

A :class:`RunResult` is read from the store once the run ends and holds only records; an output
is read from the artifact store when asked for, with its content hash checked first, and loaded
by its serializer (a pickle is unpickled: the person asked for the value, as a downstream task
would receive it; to look at an output without loading it, ``rota outputs show``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rota.artifacts.inline import is_inline
from rota.artifacts.store import load_inline, open_artifact_store
from rota.engine.ending import failed_tasks
from rota.engine.report import RunSummary, TaskSummary, summarize
from rota.errors import ArtifactError, NoOutput
from rota.model.callbacks import FailedTask
from rota.model.states import SUCCEEDED, RunState
from rota.store.base import AttemptRecord, Store


@dataclass(frozen=True)
class RunResult:
    """A finished (or interrupted) run, as the store has it.

    Attributes:
        summary: the run and each task's latest attempt (what ``rota runs show`` prints).
        attempts: every attempt of the run, mapped instances and retries included, in the
            store's order (task creation, then try number).
        artifacts: the artifact store's root its outputs were written under.
    """

    summary: RunSummary
    attempts: tuple[AttemptRecord, ...]
    artifacts: str

    @classmethod
    def read(cls, store: Store, run_id: str, artifacts: str) -> RunResult:
        """The result of run *run_id*, read from *store*.

        Raises:
            NotFound: no such run.
        """
        summary = summarize(store, run_id)
        return cls(summary, tuple(store.attempts(run_id)), artifacts)

    def __repr__(self) -> str:
        failed = f", failed: {', '.join(self.failed_tasks)}" if self.failed_tasks else ""
        return (
            f"<RunResult {self.run_id} of flow {self.flow!r}: {self.state.value}, "
            f"{len(self.tasks)} task(s){failed}>"
        )

    @property
    def run_id(self) -> str:
        return self.summary.run_id

    @property
    def flow(self) -> str:
        return self.summary.run.flow

    @property
    def state(self) -> RunState:
        return self.summary.state

    @property
    def ok(self) -> bool:
        """Whether the run succeeded (its leaves did; see the README on a run's state)."""
        return self.state is RunState.SUCCESS

    @property
    def logical_date(self) -> datetime | None:
        return self.summary.run.logical_date

    @property
    def params(self) -> Mapping[str, Any]:
        """The run's parameters as stored (a secret one as its marker, never in clear)."""
        return self.summary.run.params

    @property
    def tasks(self) -> dict[str, TaskSummary]:
        """Each task's latest attempt, state and attempt count, by task id."""
        return self.summary.tasks

    @property
    def failed_tasks(self) -> list[str]:
        """Ids of the tasks that failed (a failure a fallback handled, in a run that succeeded,
        too)."""
        return self.summary.failed_tasks

    @property
    def failures(self) -> tuple[FailedTask, ...]:
        """Each failed task with its error; a mapped task's failed instances one by one
        (``fit@2``), each with its own error."""
        return failed_tasks(self.tasks, self.attempts)

    def attempts_of(self, task_id: str, index: int | None = None) -> list[AttemptRecord]:
        """The attempts of *task_id* (of its instance *index*), oldest first.

        Raises:
            NoOutput: the run has no such task.
        """
        self._task(task_id)
        want = -1 if index is None else index
        found = [a for a in self.attempts if a.task_id == task_id and a.map_index == want]
        return sorted(found, key=lambda a: a.try_number)

    def output(self, task_id: str, index: int | None = None) -> Any:
        """The value task *task_id* returned (None when it returned None).

        A mapped task's output is the list of its instances' outputs, in order (what a
        downstream task receives); *index* gives one instance's.

        Raises:
            NoOutput: the run has no such task, or it (the instance) did not succeed.
            ArtifactError: the stored output is missing, or its bytes do not match the content
                hash recorded when it was written.
        """
        summary = self._task(task_id)
        instances = self._instances(task_id)
        if index is None and summary.mapped is None:
            return self._value(self._succeeded(summary.latest))
        if index is None:
            self._succeeded(summary.latest)
            return [self._value(self._succeeded(rec)) for _, rec in sorted(instances.items())]
        if index not in instances:
            raise NoOutput(f"task {task_id!r} of run {self.run_id} has no instance {index}")
        return self._value(self._succeeded(instances[index]))

    # --- reading -------------------------------------------------------------------------------
    def _task(self, task_id: str) -> TaskSummary:
        found = self.tasks.get(task_id)
        if found is None:
            known = ", ".join(self.tasks) or "none"
            raise NoOutput(f"run {self.run_id} has no task {task_id!r} (tasks: {known})")
        return found

    def _instances(self, task_id: str) -> dict[int, AttemptRecord]:
        latest: dict[int, AttemptRecord] = {}
        for rec in self.attempts:
            if rec.task_id != task_id or rec.map_index < 0:
                continue
            if rec.map_index not in latest or rec.try_number > latest[rec.map_index].try_number:
                latest[rec.map_index] = rec
        return latest

    def _succeeded(self, rec: AttemptRecord) -> AttemptRecord:
        if rec.state not in SUCCEEDED:
            name = rec.task_id if rec.map_index < 0 else f"{rec.task_id}@{rec.map_index}"
            why = f": {rec.error_type}: {rec.error_message}" if rec.error_type else ""
            raise NoOutput(
                f"task {name} of run {self.run_id} has no output: it is {rec.state.value}{why}"
            )
        return rec

    def _value(self, rec: AttemptRecord) -> Any:
        return read_output(rec, self.artifacts)


def read_output(rec: AttemptRecord, artifacts: str) -> Any:
    """The value attempt *rec* stored (None when it stored nothing), read through the artifact
    store at *artifacts* with its content hash checked before anything is loaded.

    Raises:
        ArtifactError: the object is missing, has no recorded hash, or does not match it.
    """
    if rec.output_path is None:
        return None
    if not rec.output_hash:
        raise ArtifactError(
            f"output of task {rec.task_id!r} at {rec.output_path} has no recorded content hash; "
            "it is not loaded unchecked"
        )
    if is_inline(rec.output_path):
        return load_inline(
            rec.output_path,
            rec.output_inline or b"",
            rec.output_serializer or "pickle",
            producer=rec.task_id,
            content_hash=rec.output_hash,
        )
    store = open_artifact_store(artifacts)
    return store.get(
        rec.output_path,
        rec.output_serializer or "pickle",
        producer=rec.task_id,
        content_hash=rec.output_hash,
    )
