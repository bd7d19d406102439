"""Helpers for testing flows: run a flow against a store of its own in one line, run one task
alone with made-up inputs and context, and a clock that stands still.

``run_flow(pipeline, tmp_path, factor=3.0)`` runs a flow in this process (the ``inprocess``
executor by default: a breakpoint in a task stops there) against a SQLite store in a folder of
its own, whatever ``ROTA_*`` variables say, and raises :class:`~rota.errors.RunFailed` with the
failed tasks' errors and the first one's traceback if the run fails. ``run_task(pipeline,
"scale", inputs={"extract": [1.0, 2.0]})`` calls one task's code with given upstream values;
what it raises, the test sees. The pytest fixture ``rota_home`` (``pytest_plugins =
["rota.pytest_plugin"]`` in a ``conftest.py``) gives each test a home of its own.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rota.config import Settings

if TYPE_CHECKING:
    from rota.engine.report import RunSummary
    from rota.engine.result import RunResult
    from rota.model.flows import FlowDefinition
    from rota.store.base import AttemptRecord, Store

__all__ = [
    "FakeClock",
    "RotaSandbox",
    "output_of",
    "read_output",
    "run_flow",
    "run_task",
    "sandbox_settings",
]


def sandbox_settings(
    home: Path | str, *, executor: str = "inprocess", workers: int | None = None
) -> Settings:
    """Settings whose store, artifacts, logs and checkpoints are all in *home* (a SQLite store):
    no ``ROTA_*`` variable and no configuration file counts."""
    folder = Path(home).expanduser().absolute()
    return Settings(
        home=folder,
        database_url=f"sqlite:///{folder / 'rota.db'}",
        executor=executor,
        workers=workers or 2,
        artifacts=str(folder / "artifacts"),
    )


def run_flow(
    flow: FlowDefinition,
    home: Path | str | None = None,
    /,
    *,
    executor: str = "inprocess",
    workers: int | None = None,
    raise_on_failure: bool = True,
    logical_date: datetime | None = None,
    params: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> RunResult:
    """Run *flow* to its end against a store in *home* (a new temporary folder if None) and
    return its result: ``run_flow(pipeline, tmp_path, factor=3.0).output("report")``.

    Parameters are keywords (or the *params* dict, for one named like an option here). Tasks
    run in this process unless *executor* says otherwise (``threads``, ``local``).

    Raises:
        RunFailed: the run did not succeed (unless *raise_on_failure* is False); its message
            names each failed task and its error, with the first one's traceback as a note.
        UserError: an unknown parameter, a flow that does not build.
    """
    from rota.api import run_flow as _run

    folder = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="rota-test-"))
    return _run(
        flow,
        {**(params or {}), **kwargs},
        raise_on_failure=raise_on_failure,
        logical_date=logical_date,
        settings=sandbox_settings(folder, executor=executor, workers=workers),
    )


def run_task(
    flow: FlowDefinition,
    task_id: str,
    /,
    *,
    inputs: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    index: int | None = None,
    logical_date: datetime | None = None,
    checkpoint_dir: Path | str | None = None,
    run_id: str = "test",
    try_number: int = 1,
) -> Any:
    """Run task *task_id* of *flow* alone, here and now, and return what it returned.

    Nothing is stored. The task's upstream outputs are *inputs* (by upstream id; a mapped
    upstream's as the list of its instances' outputs); its ``ctx`` is made up: ``ctx.params``
    are the flow's parameters built with *params*, ``ctx.logical_date`` and the data interval are
    those of the run the schedule makes for *logical_date* (default now, as a manual run),
    ``ctx.run_id`` is *run_id*, and ``ctx.checkpoint`` saves under *checkpoint_dir* (default a
    new temporary folder), in ``<checkpoint_dir>/<task>``. *index* (or ``"fit[2]"`` as
    *task_id*) picks an instance of a mapped task.

    Raises:
        UserError: no such task, a missing input, a bad index, a bad parameter.
        BaseException: whatever the task raises (``rota.Skip`` too).
    """
    from rota.engine.single import Facts, alone, parse_task

    if index is None:  # "fit[2]" or "fit@2": instance 2 of a mapped task
        task_id, index = parse_task(task_id)
    dag = flow.build(params)
    folder = checkpoint_dir if checkpoint_dir is not None else tempfile.mkdtemp(prefix="rota-")
    facts = Facts.of_timing(run_id, _timing(flow, logical_date), str(folder), try_number)
    return alone(dag, task_id, index, inputs or {}, facts).call().value


def _timing(flow: FlowDefinition, logical_date: datetime | None) -> Any:
    """The dates of the run the schedule makes for *logical_date* (a manual run's, now)."""
    from rota.engine.manual import timing_at, timing_now
    from rota.engine.session import aware_logical_date

    if logical_date is None:
        return timing_now(flow.timing, datetime.now(UTC), "manual")
    when = aware_logical_date(flow.name, flow.timing, logical_date)
    return timing_at(flow.name, flow.timing, when, "manual")


class RotaSandbox:
    """A Rota home of a test's own (what the ``rota_home`` fixture gives).

    ``sandbox.run(flow, **params)`` runs a flow against it (:func:`run_flow`), ``sandbox.store()``
    opens its store, ``sandbox.settings`` are its settings.
    """

    def __init__(self, home: Path, *, executor: str = "inprocess") -> None:
        self.home = home
        self.executor = executor

    @property
    def settings(self) -> Settings:
        return sandbox_settings(self.home, executor=self.executor)

    def run(self, flow: FlowDefinition, /, **kwargs: Any) -> RunResult:
        """:func:`run_flow` against this home (``executor=`` and the rest as there)."""
        kwargs.setdefault("executor", self.executor)
        return run_flow(flow, self.home, **kwargs)

    def resume(self, run_id: str, /, **kwargs: Any) -> RunResult:
        """``rota.resume`` of a run in this home."""
        from rota.api import resume

        executor = kwargs.pop("executor", self.executor)
        settings = sandbox_settings(self.home, executor=executor)
        return resume(run_id, settings=settings, **kwargs)

    @contextmanager
    def store(self) -> Iterator[Store]:
        """The home's store, closed on exit."""
        from rota.engine.session import open_store

        with open_store(self.settings) as store:
            yield store


def read_output(rec: AttemptRecord) -> Any:
    """The value an attempt stored (None when it stored nothing), its content hash checked.

    Raises:
        ArtifactError: the stored object is missing or does not match its content hash.
    """
    from rota.engine.result import read_output as _read

    return _read(rec, rec.output_path or "")


def output_of(summary: RunSummary, task_id: str) -> Any:
    """The value task *task_id* of a finished run returned."""
    return read_output(summary.tasks[task_id].latest)


class FakeClock:
    """A clock that stands still until told: ``clock.advance(timedelta(days=1))``.

    Give it to a Runner or Scheduler to test schedules without sleeping. ``monotonic()`` moves with
    ``now()``.
    """

    def __init__(self, start: datetime) -> None:
        if start.utcoffset() is None:
            raise ValueError("FakeClock needs an aware start time")
        self._now = start.astimezone(UTC)
        self._start = self._now

    def now(self) -> datetime:
        """The current fake time (aware, UTC)."""
        return self._now

    def monotonic(self) -> float:
        """Seconds since the clock's start."""
        return (self._now - self._start).total_seconds()

    def advance(self, by: timedelta) -> datetime:
        """Move time forward by *by* and return the new now."""
        self._now += by
        return self._now

    def set(self, to: datetime) -> None:
        """Jump to *to* (not backwards)."""
        if to.astimezone(UTC) < self._now:
            raise ValueError("a FakeClock does not go backwards")
        self._now = to.astimezone(UTC)
