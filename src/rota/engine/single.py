"""One task of a flow, run alone: with given upstream values (``rota.testing.run_task``) or with
an earlier run's stored outputs (``rota tasks test``, Airflow's ``tasks test``).

Nothing is recorded: no run, no attempt, no output, no log under ``ROTA_HOME``; the checkpoint
folder is the caller's (a temporary one by default). The store, when one is read, is only read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rota.engine.result import read_output
from rota.errors import NoOutput, NotFound, UserError
from rota.executors.base import AttemptSpec
from rota.executors.direct import Prepared, prepare
from rota.model.dag import Dag, Ref, TaskSpec
from rota.model.states import SUCCEEDED
from rota.store.base import AttemptRecord, RunRecord, RunTiming, Store


@dataclass(frozen=True, slots=True)
class Facts:
    """What the made-up context of a task run alone says: the run it pretends to belong to."""

    run_id: str
    logical_date: datetime
    data_interval_start: datetime
    data_interval_end: datetime
    try_number: int = 1
    checkpoint_dir: str = ""
    """The folder its checkpoint goes in (``<folder>/<task>``); empty: no checkpoint."""

    @classmethod
    def of_timing(
        cls, run_id: str, timing: RunTiming, checkpoint_dir: str = "", try_number: int = 1
    ) -> Facts:
        return cls(
            run_id, timing.logical_date, timing.data_interval_start, timing.data_interval_end,
            try_number=try_number, checkpoint_dir=checkpoint_dir,
        )  # fmt: skip

    @classmethod
    def of_run(cls, run: RunRecord, checkpoint_dir: str = "") -> Facts:
        """The facts of stored run *run* (a run without dates: its creation time)."""
        start = run.data_interval_start or run.logical_date or run.created_at
        return cls(
            run.run_id,
            run.logical_date or run.created_at,
            start,
            run.data_interval_end or start,
            checkpoint_dir=checkpoint_dir,
        )


def parse_task(text: str) -> tuple[str, int | None]:
    """``fit``, ``fit@2`` or ``fit[2]`` as (task id, map index or None).

    Raises:
        UserError: the index is not a whole number >= 0.
    """
    name, index = text, ""
    if text.endswith("]") and "[" in text:
        name, _, index = text[:-1].rpartition("[")
    elif "@" in text:
        name, _, index = text.rpartition("@")
    if not index:
        return name, None
    if not index.isdigit():
        raise UserError(f"bad instance in {text!r}: give TASK[N] with N a whole number >= 0")
    return name, int(index)


def task_spec(dag: Dag, task_id: str, index: int | None) -> TaskSpec:
    """Task *task_id* of *dag*, checked against *index* (needed exactly for a mapped task).

    Raises:
        NotFound: no such task.
        UserError: a mapped task without an index, or an index for a task that is not mapped.
    """
    spec = _spec(dag, task_id)
    if spec.mapped and index is None:
        raise UserError(f"task {task_id!r} is mapped: name one instance, {task_id}[N]")
    if not spec.mapped and index is not None:
        raise UserError(f"task {task_id!r} is not mapped: it has no instance {index}")
    return spec


def _spec(dag: Dag, task_id: str) -> TaskSpec:
    spec = dag.tasks.get(task_id)
    if spec is None:
        known = ", ".join(dag.order) or "none"
        raise NotFound(f"flow {dag.name!r} has no task {task_id!r} (tasks: {known})")
    return spec


def alone(
    dag: Dag, task_id: str, index: int | None, inputs: Mapping[str, Any], facts: Facts
) -> Prepared:
    """Task *task_id* (instance *index* of a mapped one) of *dag*, ready to run here and now
    (``.call()``) with *inputs* as its upstreams' outputs (by upstream id; a mapped upstream's
    as the list of its instances' outputs), in a context made of *facts*.

    Raises:
        NotFound, UserError: as :func:`task_spec`; an input is missing, or a mapped input has
            no element *index*.
        SecretNotSet: a ``rota.Secret``'s variable is not set.
    """
    spec = task_spec(dag, task_id, index)
    missing = [up for up in spec.data_inputs if up not in inputs]
    if missing:
        raise UserError(
            f"task {task_id!r} reads the output of {', '.join(map(repr, missing))}: "
            "give a value for each"
        )
    kwargs, values = _instance(spec, index, inputs)
    return prepare(_attempt(dag, spec, index, kwargs, facts), values)


def _instance(
    spec: TaskSpec, index: int | None, inputs: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keyword arguments of instance *index* and the input values they refer to."""
    kwargs, values = dict(spec.kwargs), dict(inputs)
    if index is None:
        return kwargs, values
    for name in spec.map_args:
        value = kwargs[name]
        items = inputs[value.task_id] if isinstance(value, Ref) else value
        try:
            element = items[index]
        except (IndexError, KeyError, TypeError):
            size = len(items) if hasattr(items, "__len__") else "?"
            raise UserError(
                f"task {spec.id!r} maps over {name} ({size} element(s)): it has no instance {index}"
            ) from None
        if isinstance(value, Ref):
            key = f"{value.task_id}@{index}"
            values[key] = element
            kwargs[name] = Ref(key)
        else:
            kwargs[name] = element
    return kwargs, values


def _attempt(
    dag: Dag, spec: TaskSpec, index: int | None, kwargs: dict[str, Any], facts: Facts
) -> AttemptSpec:
    name = spec.id if index is None else f"{spec.id}@{index}"
    checkpoint = f"{facts.checkpoint_dir}/{name}" if facts.checkpoint_dir else ""
    return AttemptSpec(
        attempt_id=0,
        run_id=facts.run_id,
        flow=dag.name,
        task_id=spec.id,
        map_index=-1 if index is None else index,
        try_number=facts.try_number,
        op=spec.op,
        args=spec.args,
        kwargs=kwargs,
        inputs=(),
        artifacts="",
        log_path="",
        params=dag.params,
        timeout=spec.timeout.total_seconds() if spec.timeout else None,
        checkpoint_path=checkpoint,
        serializer=spec.serializer,
        logical_date=facts.logical_date,
        data_interval_start=facts.data_interval_start,
        data_interval_end=facts.data_interval_end,
        downstream=dag.downstream(spec.id),
    )


def stored_inputs(
    store: Store, run_id: str, dag: Dag, task_id: str, artifacts: str
) -> dict[str, Any]:
    """The outputs run *run_id* stored for the upstreams task *task_id* reads (a mapped
    upstream's as the list of its instances' outputs), read with their hashes checked.

    Raises:
        NotFound: no such run or task.
        NoOutput: an upstream did not succeed in that run.
        ArtifactError: a stored output is missing or corrupt.
    """
    spec = _spec(dag, task_id)
    latest: dict[tuple[str, int], AttemptRecord] = {}
    for rec in store.attempts(run_id):
        key = (rec.task_id, rec.map_index)
        if key not in latest or rec.try_number > latest[key].try_number:
            latest[key] = rec
    return {
        up: _stored(latest, run_id, up, artifacts, mapped=dag.tasks[up].mapped)
        for up in spec.data_inputs
    }


def _stored(
    latest: Mapping[tuple[str, int], AttemptRecord],
    run_id: str,
    up: str,
    artifacts: str,
    *,
    mapped: bool,
) -> Any:
    whole = latest.get((up, -1))
    if whole is None or whole.state not in SUCCEEDED:
        state = whole.state.value if whole is not None else "not in the run"
        raise NoOutput(
            f"upstream {up!r} has no output in run {run_id} ({state}): resume or clear it first"
        )
    if not mapped:
        return read_output(whole, artifacts)
    instances = sorted((i, rec) for (tid, i), rec in latest.items() if tid == up and i >= 0)
    return [read_output(rec, artifacts) for _, rec in instances]
