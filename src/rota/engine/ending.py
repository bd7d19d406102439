"""How attempts and runs end: an outcome's stored fields, task callbacks, and the run's state.

A run's state is decided by its leaf tasks, as in Airflow (:func:`rota.model.dag.run_succeeded`):
a failed task whose failure a fallback leaf handled does not fail the run, and the summaries show
it among the run's failed tasks all the same.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rota.engine.writer import Hook
from rota.executors.base import AttemptOutcome
from rota.model.callbacks import CallbackContext
from rota.model.dag import run_succeeded
from rota.model.states import RunState
from rota.store.base import RunChange

if TYPE_CHECKING:
    from rota.engine.loop import Key, RunLoop

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
    }
    if out.error is not None:
        fields.update(
            error_type=out.error.type_name,
            error_message=out.error.message[:4000],
            error_traceback=out.error.traceback[-20000:],
            exit_code=out.error.exit_code,
        )
    return fields


def task_callbacks(
    loop: RunLoop, key: Key, event: str, out: AttemptOutcome, *, try_number: int | None = None
) -> Hook | None:
    """A hook calling task *key*'s callbacks for *event* (None when it has none)."""
    tid, index = key
    callbacks = loop.dag.tasks[tid].callbacks.for_event(event)
    if not callbacks:
        return None
    err = out.error
    ctx = CallbackContext(
        event=event,
        run_id=loop.run_rec.run_id,
        flow=loop.dag.name,
        state=_EVENT_STATE[event],
        task_id=tid if index < 0 else f"{tid}@{index}",
        try_number=try_number or loop.attempt[key].try_number,
        error_type=err.type_name if err else None,
        error_message=err.message if err else None,
        traceback=err.traceback if err else None,
        params=loop.dag.params,
    )
    runner = loop.callbacks
    return lambda: runner.fire(callbacks, ctx)


def end_run(loop: RunLoop) -> None:
    """Queue the run's end: success when every leaf succeeded or was skipped, and its callbacks."""
    states = {tid: state for (tid, index), state in loop.state.items() if index < 0}
    failed = not run_succeeded(loop.dag, states)
    final = RunState.FAILED if failed else RunState.SUCCESS
    now = loop.r.clock.now()
    change = RunChange(loop.run_rec.run_id, RunState.RUNNING, final, now)
    callbacks = loop.dag.callbacks.for_event("failure" if failed else "success")
    ctx = CallbackContext(
        event="run_failure" if failed else "run_success",
        run_id=loop.run_rec.run_id,
        flow=loop.dag.name,
        state=final.value,
        params=loop.dag.params,
    )
    runner = loop.callbacks
    loop.writer.put([], [change], [lambda: runner.fire(callbacks, ctx)])
