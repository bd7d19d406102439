"""Runs from Python: ``pipeline.run(threshold=0.9)`` and ``rota.resume(run_id)``.

A run made here is the run ``rota run`` makes (:mod:`rota.engine.session`): the same settings
(``ROTA_HOME``, ``ROTA_DATABASE_URL``, ``ROTA_EXECUTOR``...), store, executors and lease, so
``rota runs show``, ``rota resume`` and the UI see it like any other. It returns a
:class:`~rota.engine.result.RunResult` and raises only when asked to (``raise_on_failure=True``)
or when the input is wrong (an unknown parameter, a bad option: a :class:`~rota.errors.UserError`).

It blocks until the run ends, and works from any thread and inside a running event loop (a
notebook): it sets no signal handler and starts no event loop. ``await asyncio.to_thread(
pipeline.run)`` keeps the loop free meanwhile. Ctrl-C in the calling (main) thread interrupts the
run as in the CLI: the attempts in flight are marked ``interrupted`` and ``rota.resume`` goes on.

Calling a flow like a function (``pipeline(threshold=0.9)``) does not run it: it raises
:class:`~rota.errors.FlowNotCalled`, which says to use ``.run()``. A run is a recorded, possibly
long, side effect; a call that looked like a plain function call should not start one.

``rota.Flow`` and ``rota.flow`` are the model's flow classes with :meth:`run` added here, above the
engine, so that the model imports nothing of the engine.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rota.config import Settings
from rota.errors import RunFailed, UserError
from rota.model import flows
from rota.model.flows import FlowDefinition

if TYPE_CHECKING:  # the engine is imported when a run starts, not with `import rota`
    from rota.engine.loader import LoadedFlow
    from rota.engine.result import RunResult

__all__ = ["Flow", "FlowFunction", "flow", "resume", "run_flow"]


class _Runnable:
    """``.run()`` for both flow styles."""

    _defined_in: str = ""

    def run(
        self,
        params: Mapping[str, Any] | None = None,
        /,
        *,
        executor: str | None = None,
        workers: int | None = None,
        raise_on_failure: bool = False,
        logical_date: datetime | None = None,
        use_cache: bool = True,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> RunResult:
        """Run this flow to its end with the parameters given as keywords (or, for a parameter
        named like an option below, in the *params* dict), and return its result.

        Args:
            executor: ``local`` (a pool of worker processes), ``threads`` or ``inprocess``;
                default ``ROTA_EXECUTOR`` (``local``).
            workers: worker processes or threads; default ``ROTA_WORKERS`` (the CPUs).
            raise_on_failure: raise :class:`~rota.errors.RunFailed` if the run does not succeed.
            logical_date: the run the schedule makes for this date (``rota run --logical-date``);
                default now, as a manual run. Without a zone it is read in the flow's zone.
            use_cache: reuse cached outputs (False: ``rota run --no-cache``).
            settings: where the store is and how tasks run; default from ``ROTA_*`` variables.

        Raises:
            UserError: an unknown or missing parameter, a bad option or setting, a flow that does
                not build (``ParameterError``, ``ConfigError``, ``DefinitionError``).
            RunFailed: the run did not succeed and *raise_on_failure* is True.
        """
        given = {**(params or {}), **kwargs}
        return run_flow(
            self,  # type: ignore[arg-type]
            given,
            executor=executor,
            workers=workers,
            raise_on_failure=raise_on_failure,
            logical_date=logical_date,
            use_cache=use_cache,
            settings=settings,
        )


class FlowFunction(_Runnable, flows.FlowFunction):
    """A TaskFlow-style flow (``@rota.flow``) that can be run from Python: :meth:`run`."""


class Flow(_Runnable, flows.Flow):
    """An operator-style flow (``with rota.Flow("name") as f:``) that can be run from Python."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        # where the flow is defined (at a module's top level): a resume loads it from there
        caller = sys._getframe(1)
        if caller.f_code.co_name == "<module>":
            self._defined_in = str(caller.f_globals.get("__file__") or "")

    def __enter__(self) -> Flow:
        super().__enter__()
        return self


def flow(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str = "",
    **options: Any,
) -> Any:
    """Decorate a function as a flow: ``@flow`` or ``@flow(name="nightly", default_retries=2)``.

    The function's parameters, with their defaults, are the flow's parameters; *options* are
    those of :class:`~rota.model.builder.FlowOptions`. The flow runs with ``.run(**params)``.
    """
    if fn is not None:
        return FlowFunction(fn, name, description, options)

    def wrap(f: Callable[..., Any]) -> FlowFunction:
        return FlowFunction(f, name, description, options)

    return wrap


def run_flow(
    definition: FlowDefinition,
    params: Mapping[str, Any] | None = None,
    *,
    executor: str | None = None,
    workers: int | None = None,
    raise_on_failure: bool = False,
    logical_date: datetime | None = None,
    use_cache: bool = True,
    settings: Settings | None = None,
) -> RunResult:
    """Run *definition* (either flow style) to its end; see :meth:`FlowFunction.run`.

    Raises:
        UserError: bad parameters, options or settings; a flow that does not build.
        RunFailed: the run did not succeed and *raise_on_failure* is True.
    """
    from rota.engine.result import RunResult
    from rota.engine.session import aware_logical_date, create_manual_run, session

    chosen = _settings(settings).with_options(executor=executor, workers=workers)
    loaded = _loaded(definition)
    dag = loaded.build(params or {})  # every definition error before anything is written
    when = None
    if logical_date is not None:
        when = aware_logical_date(definition.name, definition.timing, logical_date)
    with session(chosen, use_cache=use_cache) as runner:
        record = create_manual_run(runner, dag, loaded.ref, definition.timing, logical_date=when)
        runner.drive(record.run_id, dag, loaded.ref)
        result = RunResult.read(runner.store, record.run_id, runner.artifacts_root)
    return _checked(result, raise_on_failure)


def resume(
    run_id: str,
    params: Mapping[str, Any] | None = None,
    /,
    *,
    flow: FlowDefinition | None = None,
    executor: str | None = None,
    workers: int | None = None,
    raise_on_failure: bool = False,
    settings: Settings | None = None,
    **kwargs: Any,
) -> RunResult:
    """Continue run *run_id* (failed or interrupted): only what did not succeed runs again, as
    ``rota resume RUN_ID`` does.

    The flow's code is loaded again from the file the run was made from, or is *flow* when given
    (a flow defined in a notebook has no file). Keyword parameters replace the run's: give a
    secret parameter again this way (the store does not keep it).

    Raises:
        UserError: no such run, it succeeded already, its flow cannot be loaded, a bad parameter.
        RunBusy: another live runner drives it.
        RunFailed: the run did not succeed and *raise_on_failure* is True.
    """
    from rota.engine.result import RunResult
    from rota.engine.session import build_for_run, flow_of_run, open_store, session

    chosen = _settings(settings).with_options(executor=executor, workers=workers)
    with open_store(chosen) as store:
        run = store.get_run(run_id)
    loaded = flow_of_run(run) if flow is None else _loaded(flow)
    dag = build_for_run(run, loaded, {**(params or {}), **kwargs}, os.environ)
    with session(chosen) as runner:
        runner.resume(run.run_id, dag, loaded.ref)
        result = RunResult.read(runner.store, run.run_id, runner.artifacts_root)
    return _checked(result, raise_on_failure)


def _settings(settings: Settings | None) -> Settings:
    return settings if settings is not None else Settings.from_env(os.environ)


def _loaded(definition: FlowDefinition) -> LoadedFlow:
    """The flow as the loader would have found it: with the file it is defined in, if any."""
    from rota.engine.loader import in_memory

    if not isinstance(definition, flows.Flow | flows.FlowFunction):
        raise UserError(f"not a flow: {definition!r}")
    return in_memory(definition, _source_file(definition))


def _source_file(definition: FlowDefinition) -> Path | None:
    """The file that defines *definition* at module level, when it is one on disk (not a
    notebook's cell, nor a flow made inside a function: a resume could not find those)."""
    import inspect

    text = ""
    if isinstance(definition, flows.FlowFunction):
        if "<locals>" not in definition.fn.__qualname__:
            with contextlib.suppress(TypeError):
                text = inspect.getsourcefile(definition.fn) or ""
    else:
        text = getattr(definition, "_defined_in", "")
    path = Path(text).resolve() if text else None
    return path if path is not None and path.is_file() else None


def _checked(result: RunResult, raise_on_failure: bool) -> RunResult:
    """*result*, or RunFailed naming each failed task and its error (with the first one's
    traceback as a note, which pytest and the interpreter show) when asked to raise."""
    if not raise_on_failure or result.ok:
        return result
    failures = result.failures
    lines = [f"  {f.line()}" for f in failures[:10]]
    detail = ("\n" + "\n".join(lines)) if lines else ""
    err = RunFailed(
        f"run {result.run_id} of flow {result.flow} {result.state.value}{detail}", result
    )
    if failures:
        name, _, index = failures[0].task_id.partition("@")
        tries = result.attempts_of(name, int(index) if index else None)
        if tries and tries[-1].error_traceback:
            err.add_note(f"traceback of {failures[0].task_id}:\n{tries[-1].error_traceback}")
    raise err
