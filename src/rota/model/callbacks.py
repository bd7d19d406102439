"""Callbacks: what a flow asks to be told when a task or a run succeeds, fails or retries.

Callbacks are plain callables taking one :class:`CallbackContext`. The engine calls them after
the state change is committed, off its main loop; one that raises is logged and never changes a
state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from rota.errors import DefinitionError
from rota.model.secrets import Masker, display_params


@dataclass(frozen=True, slots=True)
class FailedTask:
    """A task that failed in a run, as a run callback is told of it.

    Attributes:
        task_id: the task's id; ``fit@2`` for instance 2 of a mapped task ``fit`` (an instance
            that failed is named with its own error, not the mapped task's summary).
        try_number: its last try.
        error_type: the error's class name (``TaskTimeout``, ``ValueError``...).
        error_message: the error's message, secrets masked.
    """

    task_id: str
    try_number: int | None = None
    error_type: str | None = None
    error_message: str | None = None

    def line(self) -> str:
        """``fit@2: TaskTimeout: timed out after 5s`` (the message's first line)."""
        message = (self.error_message or "").strip().splitlines()
        head = f"{self.error_type}: {message[0]}" if message else (self.error_type or "failed")
        return f"{self.task_id}: {head}"

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "try_number": self.try_number,
            "error_type": self.error_type,
            "error_message": self.error_message,
        }


@dataclass(frozen=True, slots=True)
class CallbackContext:
    """What a callback is told: the event, the run, and (for task events) the attempt and error.

    For a run event (``run_failure``, ``run_success``), ``failed_tasks`` lists every task of the
    run that failed, each with its error (a failure a fallback task handled, in a run that
    succeeded, too), and ``task_id``, ``try_number`` and the ``error_*`` fields are the first of
    them (None when none failed). ``url`` is the page of the run (of the task, for a task event)
    in the web UI, when ``ROTA_UI_URL`` says where the UI runs.

    Secrets are masked on construction (``rota.model.secrets``): ``params`` holds ``***`` for each
    secret parameter (and Secret), and the secret values of ``params`` are ``***`` in
    ``error_message``, ``traceback`` and the failed tasks' messages. Callbacks and notifiers never
    see a secret in clear.
    """

    event: str  # success | failure | retry | run_success | run_failure
    run_id: str
    flow: str
    state: str
    task_id: str | None = None
    try_number: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    failed_tasks: tuple[FailedTask, ...] = ()
    url: str | None = None

    def __post_init__(self) -> None:
        masker = Masker.of_params(self.params)
        for name in ("error_message", "traceback"):
            text = getattr(self, name)
            if text:
                object.__setattr__(self, name, masker.redact(text))
        masked = tuple(
            replace(f, error_message=masker.redact(f.error_message)) if f.error_message else f
            for f in self.failed_tasks
        )
        object.__setattr__(self, "failed_tasks", masked)
        object.__setattr__(self, "params", display_params(self.params))

    @property
    def is_run_event(self) -> bool:
        """Whether this is a run's end (``run_success``, ``run_failure``), not a task's event."""
        return self.event.startswith("run_")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the context (the body a webhook notifier posts)."""
        return {
            "event": self.event,
            "run_id": self.run_id,
            "flow": self.flow,
            "state": self.state,
            "task_id": self.task_id,
            "try_number": self.try_number,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "failed_tasks": [f.to_json() for f in self.failed_tasks],
            "url": self.url,
            "params": {k: v if isinstance(v, str | int | float | bool) else repr(v)
                       for k, v in self.params.items()},
        }  # fmt: skip


def ui_link(base: str, run_id: str, task_id: str | None = None) -> str | None:
    """The UI page of run *run_id* (of its task *task_id*) under *base*; None without a base.

    A mapped instance (``fit@2``) links to its task's page.
    """
    if not base:
        return None
    link = f"{base.rstrip('/')}/runs/{quote(run_id, safe='')}"
    if task_id:
        link += f"/tasks/{quote(task_id.split('@', 1)[0], safe='')}"
    return link


Callback = Callable[[CallbackContext], object]

CallbackArg = Callback | Iterable[Callback] | None


def _callables(name: str, value: CallbackArg) -> tuple[Callback, ...] | None:
    if value is None:
        return None
    items = [value] if callable(value) else list(value)
    for item in items:
        if not callable(item):
            raise DefinitionError(f"{name} must be a callable or a list of callables, got {item!r}")
    return tuple(items)


@dataclass(frozen=True, slots=True)
class Callbacks:
    """The callables to call per event; None means "not set here" (a default may apply)."""

    on_success: tuple[Callback, ...] | None = None
    on_failure: tuple[Callback, ...] | None = None
    on_retry: tuple[Callback, ...] | None = None

    @classmethod
    def of(
        cls,
        on_success: CallbackArg = None,
        on_failure: CallbackArg = None,
        on_retry: CallbackArg = None,
    ) -> Callbacks:
        """Validate callables (one, or a list) per event.

        Raises:
            DefinitionError: a value is not callable.
        """
        return cls(
            _callables("on_success", on_success),
            _callables("on_failure", on_failure),
            _callables("on_retry", on_retry),
        )

    def with_defaults(self, defaults: Callbacks) -> Callbacks:
        """Per event, these callbacks if set, else *defaults*'."""
        return Callbacks(
            self.on_success if self.on_success is not None else defaults.on_success,
            self.on_failure if self.on_failure is not None else defaults.on_failure,
            self.on_retry if self.on_retry is not None else defaults.on_retry,
        )

    def for_event(self, event: str) -> tuple[Callback, ...]:
        """The callables for *event* (``success``, ``failure``, ``retry``)."""
        found: tuple[Callback, ...] | None = getattr(self, f"on_{event}", None)
        return found or ()


NO_CALLBACKS = Callbacks()
