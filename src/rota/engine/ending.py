"""How attempts and runs end: an outcome's stored fields, task callbacks, and the run's state.

A run's state is decided by its leaf tasks, as in Airflow (:func:`rota.model.dag.run_succeeded`):
a failed task whose failure a fallback leaf handled does not fail the run, and the summaries show
it among the run's failed tasks all the same.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rota.engine.book import Key
from rota.engine.callbacks import CallbackRunner
from rota.engine.writer import BatchWriter, Hook
from rota.executors.base import AttemptOutcome
from rota.model.callbacks import CallbackContext, FailedTask, ui_link
from rota.model.dag import Dag, run_succeeded
from rota.model.safetext import safe_text
from rota.model.states import RunState, TaskState
from rota.store.base import AttemptRecord, RunChange, Store

_EVENT_STATE = {"success": "success", "failure": "failed", "retry": "up_for_retry"}


def outcome_fields(out: AttemptOutcome) -> dict[str, Any]:
    """The attempt columns an outcome sets: when it ended, its log, output and error."""
    fields: dict[str, Any] = {
        "finished_at": datetime.fromtimestamp(out.finished_at, UTC),
        "log_path": out.log_path,
        "output_path": out.output_path,
        "output_size": out.output_size,
        "output_length": out.output_length,
        "output_hash": out.output_hash,
        "output_serializer": out.output_serializer,
        "output_inline": out.output_inline,
    }
    if out.error is not None:
        fields.update(
            error_type=out.error.type_name,
            error_message=out.error.message[:4000],
            error_traceback=out.error.traceback[-20000:],
            exit_code=out.error.exit_code,
        )
    return fields


@dataclass(frozen=True, slots=True)
class RunSite:
    """What callbacks are told of a run, and who calls them: its graph, id and UI address."""

    dag: Dag
    run_id: str
    ui_url: str
    callbacks: CallbackRunner


def task_callbacks(
    loop: RunSite, key: Key, event: str, out: AttemptOutcome, *, try_number: int
) -> Hook | None:
    """A hook calling task *key*'s callbacks for *event* (None when it has none), of attempt
    *try_number*."""
    tid, index = key
    callbacks = loop.dag.tasks[tid].callbacks.for_event(event)
    if not callbacks:
        return None
    err = out.error
    ctx = CallbackContext(
        event=event,
        run_id=loop.run_id,
        flow=loop.dag.name,
        state=_EVENT_STATE[event],
        task_id=tid if index < 0 else f"{tid}@{index}",
        try_number=try_number,
        error_type=err.type_name if err else None,
        error_message=err.message if err else None,
        traceback=err.traceback if err else None,
        params=loop.dag.params,
        url=ui_link(loop.ui_url, loop.run_id, tid),
    )
    runner = loop.callbacks
    return lambda: runner.fire(callbacks, ctx)


def end_run(
    loop: RunSite,
    state: Mapping[Key, TaskState],
    store: Store,
    writer: BatchWriter,
    now: datetime,
) -> None:
    """Queue the run's end: success when every leaf succeeded or was skipped, and its callbacks.

    *state* is each key's state; only the leaves' are read. The callbacks are told of the run's
    failed tasks and their errors, read back from the store once the run's end is committed
    (every earlier change is, by then).
    """
    leaves = {tid: state[(tid, -1)] for tid in loop.dag.leaves if (tid, -1) in state}
    failed = not run_succeeded(loop.dag, leaves)
    final = RunState.FAILED if failed else RunState.SUCCESS
    run_id = loop.run_id
    change = RunChange(run_id, RunState.RUNNING, final, now)
    callbacks = loop.dag.callbacks.for_event("failure" if failed else "success")
    if not callbacks:
        writer.put([], [change])
        return
    dag, ui_url = loop.dag, loop.ui_url

    def context() -> CallbackContext:
        failures = read_failures(store, dag, run_id)
        first = failures[0] if failures else None
        return CallbackContext(
            event="run_failure" if failed else "run_success",
            run_id=run_id,
            flow=dag.name,
            state=final.value,
            task_id=first.task_id if first else None,
            try_number=first.try_number if first else None,
            error_type=first.error_type if first else None,
            error_message=first.error_message if first else None,
            params=dag.params,
            failed_tasks=failures,
            url=ui_link(ui_url, run_id),
        )

    runner = loop.callbacks
    writer.put([], [change], [lambda: runner.fire_with(callbacks, context)])


def read_failures(store: Store, dag: Dag, run_id: str) -> tuple[FailedTask, ...]:
    """The failed tasks of *run_id* as the store has them (see :func:`failed_tasks`); none, with
    a line on stderr, when the store cannot be read (the callbacks are called all the same)."""
    try:
        records = store.attempts(run_id)
    except Exception as err:
        text = safe_text(err)
        print(f"rota: could not read the failed tasks of run {run_id}: {text}", file=sys.stderr)
        return ()
    return failed_tasks(dag.order, records)


def failed_tasks(order: Iterable[str], records: Iterable[AttemptRecord]) -> tuple[FailedTask, ...]:
    """The tasks whose latest attempt failed, in *order* (the graph's), each with its error.

    A mapped task whose instances failed is given as those instances (``fit@2``), each with its
    own error (``TaskTimeout``), rather than as the mapped task and its summary.
    """
    latest: dict[tuple[str, int], AttemptRecord] = {}
    for rec in records:
        key = (rec.task_id, rec.map_index)
        if key not in latest or rec.try_number > latest[key].try_number:
            latest[key] = rec
    instances: dict[str, list[AttemptRecord]] = {}
    for (tid, index), rec in sorted(latest.items()):
        if index >= 0 and rec.state is TaskState.FAILED:
            instances.setdefault(tid, []).append(rec)
    out: list[FailedTask] = []
    for tid in order:
        parent = latest.get((tid, -1))
        if tid in instances:
            out.extend(_failed(rec) for rec in instances[tid])
        elif parent is not None and parent.state is TaskState.FAILED:
            out.append(_failed(parent))
    return tuple(out)


def _failed(rec: AttemptRecord) -> FailedTask:
    name = rec.task_id if rec.map_index < 0 else f"{rec.task_id}@{rec.map_index}"
    return FailedTask(name, rec.try_number, rec.error_type, rec.error_message)
