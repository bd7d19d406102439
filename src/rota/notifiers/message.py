"""What a notification says, in words: one headline and the failed tasks with their errors.

Shared by the notifiers that write for people (Slack, email). Everything they show comes from
the :class:`~rota.model.callbacks.CallbackContext`, in which secrets are ``***`` already.
"""

from __future__ import annotations

from typing import Final

from rota.model.callbacks import CallbackContext, FailedTask

MAX_LISTED: Final = 10
"""Failed tasks listed by name in one message; the others are counted."""
MAX_ERROR: Final = 2000
"""Characters of one error message shown; the rest is cut, saying so."""

_DONE: Final = {
    "success": "succeeded",
    "failure": "failed",
    "retry": "failed and will be retried",
    "run_success": "succeeded",
    "run_failure": "failed",
}


def headline(ctx: CallbackContext) -> str:
    """``run R of flow F failed`` / ``task T of flow F failed (try 2) in run R``."""
    done = _DONE.get(ctx.event, ctx.event)
    if ctx.is_run_event:
        handled = ""
        if ctx.event == "run_success" and ctx.failed_tasks:
            handled = f", {len(ctx.failed_tasks)} failed task(s) handled"
        return f"run {ctx.run_id} of flow {ctx.flow} {done}{handled}"
    tries = f" (try {ctx.try_number})" if ctx.try_number else ""
    return f"task {ctx.task_id} of flow {ctx.flow} {done}{tries} in run {ctx.run_id}"


def failures(ctx: CallbackContext) -> tuple[FailedTask, ...]:
    """The failed tasks to show: a run's failed tasks, or the task an event is about (if it
    failed)."""
    if ctx.is_run_event:
        return ctx.failed_tasks
    if ctx.error_type is None and ctx.error_message is None:
        return ()
    name = ctx.task_id or "?"
    return (FailedTask(name, ctx.try_number, ctx.error_type, ctx.error_message),)


def error_text(failed: FailedTask) -> str:
    """``TaskTimeout: timed out after 5s``, cut to MAX_ERROR characters."""
    message = failed.error_message or ""
    if len(message) > MAX_ERROR:
        message = message[:MAX_ERROR] + f"... [cut: {len(failed.error_message or '')} characters]"
    kind = failed.error_type or "failed"
    return f"{kind}: {message}" if message else kind


def more_line(ctx: CallbackContext) -> str | None:
    """``... and 3 more failed tasks`` when more failed than are listed."""
    extra = len(failures(ctx)) - MAX_LISTED
    return f"... and {extra} more failed task(s)" if extra > 0 else None
