"""Running one attempt: load inputs, call the operator, write the output atomically, report.

Shared by every executor. Success is reported only after the output is durable (DESIGN.md,
invariant 2); a task that raises :class:`~rota.errors.Skip` is reported as skipped, not failed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any, Protocol

from rota.artifacts.local import OutputCache
from rota.artifacts.shared import open_checkpoint
from rota.artifacts.store import ArtifactStore, StoredOutput, open_artifact_store
from rota.errors import ArtifactError, Reschedule, Skip
from rota.executors.base import AttemptOutcome, AttemptSpec, ErrorInfo, StoredRef
from rota.executors.secrets import attempt_masker, redact_error, reveal_attempt
from rota.model.branching import Choice, Chosen
from rota.model.dag import resolve
from rota.model.policies import qualified_name
from rota.model.secrets import Masker
from rota.operators.base import ExecContext, NoCheckpoint, StoreReader


class Capture(Protocol):
    """Where an attempt's printed output goes (see ``executors.logs``)."""

    def begin(self, log_path: str, masker: Masker, *, append: bool = False) -> None:
        """Write what this attempt prints to *log_path* from now on, masking *masker*'s values."""

    def end(self) -> str | None:
        """Stop; the log's path, or None when the attempt printed nothing."""


_STORES: dict[str, ArtifactStore] = {}


def artifact_store(root: str) -> ArtifactStore:
    """The artifact store at *root*, opened once per process."""
    store = _STORES.get(root)
    if store is None:
        store = _STORES[root] = open_artifact_store(root)
    return store


def _load(ref: StoredRef | None, producer: str, cache: OutputCache, root: str) -> Any:
    if ref is None:
        return None
    hit, value = cache.get(ref.uri)
    if not hit:
        store = artifact_store(root)
        value = store.get(
            ref.uri,
            ref.serializer,
            producer=producer,
            content_hash=ref.content_hash,
            inline=ref.inline,
        )
        cache.put(ref.uri, value, ref.size)
    return value


def load_inputs(spec: AttemptSpec, cache: OutputCache) -> dict[str, Any]:
    """The outputs of the upstreams *spec* reads, from memory when this process has them.

    Raises:
        ArtifactError: an input is missing or unreadable (the message names it and its producer).
    """
    values: dict[str, Any] = {}
    for ref in spec.inputs:
        producer = ref.task_id.split("@", 1)[0]
        if ref.parts is not None:
            values[ref.task_id] = [_load(p, producer, cache, spec.artifacts) for p in ref.parts]
            continue
        value = _load(ref.ref, producer, cache, spec.artifacts)
        if ref.index is not None:
            try:
                value = value[ref.index]
            except (TypeError, IndexError, KeyError) as err:
                raise ArtifactError(
                    f"cannot take element {ref.index} of the output of task {producer!r}: {err}"
                ) from None
        values[ref.task_id] = value
    return values


def output_length(value: Any) -> int | None:
    """len() of a list or tuple output, which a downstream .map() can fan out over."""
    return len(value) if isinstance(value, list | tuple) else None


def make_context(
    spec: AttemptSpec,
    *,
    own_session: bool,
    masker: Masker | None = None,
    store: StoreReader | None = None,
) -> ExecContext:
    """The context an attempt's operator (and a task's ``ctx`` parameter) receives."""
    checkpoint = (
        open_checkpoint(spec.checkpoint_path, spec.task_id)
        if spec.checkpoint_path
        else NoCheckpoint()
    )
    deadline = time.monotonic() + spec.timeout if spec.timeout else None
    return ExecContext(
        spec.run_id,
        spec.flow,
        spec.task_id,
        spec.try_number,
        spec.params,
        checkpoint=checkpoint,
        deadline=deadline,
        own_session=own_session,
        logical_date=spec.logical_date,
        data_interval_start=spec.data_interval_start,
        data_interval_end=spec.data_interval_end,
        first_poke_at=spec.first_poke_at,
        pokes=spec.pokes,
        masker=masker if masker is not None else Masker(),
        store=store,
        downstream=spec.downstream,
        artifacts=spec.artifacts,
        map_index=spec.map_index,
    )


def run_attempt(
    spec: AttemptSpec,
    cache: OutputCache,
    capture: Capture,
    worker: str,
    *,
    own_session: bool = True,
    store: StoreReader | None = None,
) -> AttemptOutcome:
    """Run *spec* here and now and return its outcome, whatever fails on the way.

    *capture* writes what the attempt prints to its log while it runs (``executors.logs``), with
    the attempt's secrets masked: they are all known before it begins (its ``rota.Secret``
    values are read first). *own_session* is False in worker processes (see
    :class:`ExecContext`). *store* is given only by the engine, to the sensors that read the
    metadata store.

    Starting the capture, loading the inputs, the task itself, writing its output and saving its
    log can each fail: the outcome then comes back failed with that error (its type and message,
    e.g. a ``PermissionError`` naming the logs folder), so no executor is left waiting for it. A
    task that cannot have its output captured is not run; a task that succeeded but whose log
    could not be written is reported failed, since what it printed is lost.

    Raises:
        KeyboardInterrupt: only that passes through (Ctrl-C under the in-process executor), once
            the log has what the task printed.
    """
    started = time.time()
    masker = attempt_masker(spec)
    revealed = _reveal(spec, masker)
    try:
        capture.begin(spec.log_path, masker, append=spec.pokes > 0)  # a sensor's later pokes
    except Exception as err:
        _stop_capture_quietly(capture)
        return crashed_outcome(spec.attempt_id, worker, err, started=started)
    try:
        result = _execute(revealed, cache, own_session=own_session, masker=masker, store=store)
    except BaseException:
        _stop_capture_quietly(capture)
        raise
    try:
        log_path = capture.end()
    except Exception as err:
        log_path = None
        result = _log_lost(result, err)
    if result.error is not None:  # no secret in the store (the log was masked as it was written)
        result = replace(result, error=redact_error(result.error, masker))
    return AttemptOutcome(
        attempt_id=spec.attempt_id,
        ok=result.error is None,
        started_at=started,
        finished_at=time.time(),
        worker=worker,
        output_path=result.stored.uri if result.stored else None,
        output_size=result.stored.size if result.stored else None,
        output_length=result.length,
        output_hash=result.stored.content_hash if result.stored else None,
        output_serializer=result.stored.serializer if result.stored else None,
        output_inline=result.stored.inline if result.stored else None,
        log_path=log_path,
        error=result.error,
        skipped=result.skipped,
        reschedule_at=result.reschedule_at,
        choice=result.choice if result.error is None else None,
    )


def _reveal(spec: AttemptSpec, masker: Masker) -> AttemptSpec | Exception:
    """*spec* with its ``rota.Secret`` values read (each added to *masker*), or why they could
    not be (reported as the task's error once its log is open)."""
    try:
        return reveal_attempt(spec, os.environ, masker)
    except Exception as err:
        return err


@dataclass(frozen=True, slots=True)
class _Result:
    """What running the task gave: an output, a skip, a reschedule or an error."""

    stored: StoredOutput | None = None
    length: int | None = None
    error: ErrorInfo | None = None
    skipped: bool = False
    reschedule_at: float | None = None
    choice: Choice | None = None


def _execute(
    spec: AttemptSpec | Exception,
    cache: OutputCache,
    *,
    own_session: bool,
    masker: Masker,
    store: StoreReader | None = None,
) -> _Result:
    """Load the inputs, call the operator, store the output; every error becomes the result
    (*spec* is the error when its Secrets could not be read)."""
    try:
        if isinstance(spec, Exception):
            raise spec
        inputs = load_inputs(spec, cache)
        args = resolve(spec.args, inputs)
        kwargs = resolve(dict(spec.kwargs), inputs)
        ctx = make_context(spec, own_session=own_session, masker=masker, store=store)
        value = spec.op.execute(ctx, args, kwargs)  # type: ignore[attr-defined]
        choice = None
        if isinstance(value, Chosen):  # a branch or short-circuit task: its output and choice
            value, choice = value.value, value.choice
        if value is None:
            return _Result(choice=choice)
        length = output_length(value)
        outputs = artifact_store(spec.artifacts)
        stored = outputs.put(
            spec.run_id,
            spec.task_id,
            spec.map_index,
            value,
            spec.serializer,
            inline_limit=spec.inline_limit,
        )
        cache.put(stored.uri, value, stored.size)
        return _Result(stored, length, choice=choice)
    except Reschedule as sig:
        return _Result(reschedule_at=sig.at)
    except Skip as sig:
        _say(f"[rota] task skipped itself: {_text(sig)}")
        return _Result(skipped=True)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # SystemExit too: a task calling sys.exit() has failed
        _say("".join(traceback.format_exception(err)).rstrip("\n"))
        return _Result(error=describe_error(err))


def _log_lost(result: _Result, err: Exception) -> _Result:
    """*result* once the attempt's log could not be saved: a failure with that error, unless the
    task failed already (its own error stays the one reported; the log's is noted with it)."""
    lost = describe_error(err)
    if result.error is None:
        return _Result(error=lost)
    note = f"\n(the attempt's log could not be saved: {lost.type_name}: {lost.message})\n"
    return replace(result, error=replace(result.error, traceback=result.error.traceback + note))


def _stop_capture_quietly(capture: Capture) -> None:
    # Undo whatever part of begin() took effect (e.g. fds already redirected), so the worker
    # prints where it did before; nothing of it is worth a second error.
    with contextlib.suppress(Exception):
        capture.end()


def _say(text: str) -> None:
    """Print *text* into the attempt's log, if that still works."""
    with contextlib.suppress(Exception):
        print(text, file=sys.stderr)


def crashed_outcome(
    attempt_id: int, worker: str, err: BaseException, *, started: float | None = None
) -> AttemptOutcome:
    """The outcome of an attempt that failed around its task (capturing its output, reading its
    spec or operator, the worker's own loop), with *err* as its error."""
    now = time.time()
    return AttemptOutcome(
        attempt_id, False, now if started is None else started, now, worker,
        error=describe_error(err),
    )  # fmt: skip


def describe_error(err: BaseException) -> ErrorInfo:
    """Text form of an exception, with the exit code of a failed shell command or sys.exit()."""
    code = getattr(err, "code", None)
    message = _text(err)
    if isinstance(err, SystemExit):
        message = f"the task called sys.exit({code!r})"
    return ErrorInfo(
        type_name=type(err).__qualname__,
        message=message or type(err).__name__,
        traceback="".join(traceback.format_exception(err)),
        exit_code=code if isinstance(code, int) else None,
        mro=tuple(qualified_name(c) for c in type(err).__mro__),
    )


def _text(err: BaseException) -> str:
    """str(*err*), or a stand-in when the exception's own __str__ fails."""
    try:
        return str(err)
    except Exception as broken:
        return f"<the error's text could not be made: {type(broken).__name__}>"
