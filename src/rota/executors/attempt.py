"""Running one attempt: load inputs, call the operator, write the output atomically, report.

Shared by every executor. Success is reported only after the output is durable (DESIGN.md,
invariant 2); a task that raises :class:`~rota.errors.Skip` is reported as skipped, not failed.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rota.artifacts.local import FileCheckpoint, OutputCache
from rota.artifacts.store import ArtifactStore, StoredOutput, open_artifact_store
from rota.errors import ArtifactError, Reschedule, Skip
from rota.executors.base import AttemptOutcome, AttemptSpec, ErrorInfo, StoredRef
from rota.model.dag import resolve
from rota.model.policies import qualified_name
from rota.operators.base import ExecContext, NoCheckpoint


class Capture(Protocol):
    """Where an attempt's printed output goes (see ``executors.logs``)."""

    def end(self, log_path: str, *, append: bool = False) -> str | None: ...


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
        value = store.get(ref.uri, ref.serializer, producer=producer, content_hash=ref.content_hash)
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


def make_context(spec: AttemptSpec, *, own_session: bool) -> ExecContext:
    """The context an attempt's operator (and a task's ``ctx`` parameter) receives."""
    checkpoint = (
        FileCheckpoint(Path(spec.checkpoint_path), producer=spec.task_id)
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
        store_url=spec.store_url,
    )


def run_attempt(
    spec: AttemptSpec,
    cache: OutputCache,
    begin: Callable[[], None],
    capture: Capture,
    worker: str,
    *,
    own_session: bool = True,
) -> AttemptOutcome:
    """Run *spec* here and now; never raises for the task's own errors.

    *begin* starts output capture; *capture.end* stops it and names the log file, if any.
    *own_session* is False in worker processes (see :class:`ExecContext`).
    """
    started = time.time()
    begin()
    stored: StoredOutput | None = None
    length: int | None = None
    error: ErrorInfo | None = None
    skipped = False
    reschedule_at: float | None = None
    try:
        inputs = load_inputs(spec, cache)
        args = resolve(spec.args, inputs)
        kwargs = resolve(dict(spec.kwargs), inputs)
        ctx = make_context(spec, own_session=own_session)
        value = spec.op.execute(ctx, args, kwargs)  # type: ignore[attr-defined]
        if value is not None:
            length = output_length(value)
            store = artifact_store(spec.artifacts)
            stored = store.put(spec.run_id, spec.task_id, spec.map_index, value, spec.serializer)
            cache.put(stored.uri, value, stored.size)
    except Reschedule as sig:
        reschedule_at = sig.at
    except Skip as sig:
        skipped = True
        print(f"[rota] task skipped itself: {sig}", file=sys.stderr)
    except Exception as err:
        error = describe_error(err)
        traceback.print_exc(file=sys.stderr)
    log_path = capture.end(spec.log_path, append=spec.pokes > 0)  # a sensor's later pokes
    return AttemptOutcome(
        attempt_id=spec.attempt_id,
        ok=error is None,
        started_at=started,
        finished_at=time.time(),
        worker=worker,
        output_path=stored.uri if stored else None,
        output_size=stored.size if stored else None,
        output_length=length,
        output_hash=stored.content_hash if stored else None,
        output_serializer=stored.serializer if stored else None,
        log_path=log_path,
        error=error,
        skipped=skipped,
        reschedule_at=reschedule_at,
    )


def describe_error(err: BaseException) -> ErrorInfo:
    """Text form of an exception, with the exit code of a failed shell command."""
    tb = "".join(traceback.format_exception(err))
    code = getattr(err, "code", None)
    return ErrorInfo(
        type_name=type(err).__qualname__,
        message=str(err) or type(err).__name__,
        traceback=tb,
        exit_code=code if isinstance(code, int) else None,
        mro=tuple(qualified_name(c) for c in type(err).__mro__),
    )
