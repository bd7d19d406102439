"""Runs in the foreground: the store, an executor and a runner opened together from the settings.

``rota run``, ``rota resume``, ``flow.run()`` and ``rota.resume()`` all start here, so a run made
from Python is the run the CLI makes: the same store (``ROTA_HOME``, ``ROTA_DATABASE_URL``), the
same executors, the same lease, and ``rota runs show`` shows it like any other.

Nothing here touches signal handlers (only a process's main thread may set them; ``rota``'s
``main`` makes SIGTERM a KeyboardInterrupt), so a session can be opened from any thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rota.config import Settings
from rota.errors import FlowNotFound, UserError

if TYPE_CHECKING:  # imported when a run starts: every `rota` command imports this module
    from rota.engine.loader import LoadedFlow
    from rota.engine.runner import FlowRef, ProgressHook, Runner, RunnerOptions
    from rota.engine.slots import SlotGroup
    from rota.model.dag import Dag
    from rota.model.schedule import FlowTiming
    from rota.store.base import RunRecord, Store


@contextmanager
def open_store(settings: Settings) -> Iterator[Store]:
    """The store named by the settings, closed on exit; first the home is checked (and made).

    Raises:
        UnsafeHome: another user could tamper with the home, its logs or its SQLite file.
        StoreError: the store cannot be opened (``DatabaseUrlError``: its URL is invalid).
    """
    from rota.home import check_home
    from rota.store.connect import sqlite_file
    from rota.store.sql import open_store as _open

    check_home(settings.home, store_file=sqlite_file(settings.database_url))
    store = _open(
        settings.database_url,
        connect_timeout=settings.db_connect_timeout,
        statement_timeout=settings.db_statement_timeout,
    )
    try:
        yield store
    finally:
        store.close()


def runner_options(
    settings: Settings, *, use_cache: bool = True, slot_group: SlotGroup | None = None
) -> RunnerOptions:
    """The runner's options for a foreground run under *settings*: its lease renewed as the
    heartbeat timeout asks (``ROTA_HEARTBEAT_TIMEOUT``), its id on ``ROTA_HOSTNAME``
    (*slot_group*: the task-slot limit of the scheduler that started this driver, if one did)."""
    from datetime import timedelta

    from rota.engine.faults import FaultPoints
    from rota.engine.lease import heartbeat_every
    from rota.engine.runner import RunnerOptions

    timeout = timedelta(seconds=settings.heartbeat_timeout)
    return RunnerOptions(
        faults=FaultPoints(settings.fault_points),
        use_cache=use_cache,
        stale_after=timeout,
        heartbeat_every=heartbeat_every(timeout),
        host=settings.hostname or None,
        slot_group=slot_group,
        inline_output_max=settings.inline_output_max,
    )


@contextmanager
def session(
    settings: Settings,
    *,
    on_progress: ProgressHook | None = None,
    use_cache: bool = True,
    slot_group: SlotGroup | None = None,
) -> Iterator[Runner]:
    """A runner on the store and the executor *settings* name; both are closed on exit.

    The executor is opened first, before the store's threads start: the local pool forks its
    workers. When the block raises (Ctrl-C included), the executor is closed without waiting for
    running attempts.

    Raises:
        ConfigError: the settings name an unknown executor.
        UnsafeHome, StoreError: as :func:`open_store`.
    """
    from rota.engine.runner import Runner
    from rota.executors.factory import open_executor
    from rota.model.schedule import SystemClock

    executor = open_executor(settings)
    cancel = True
    try:
        with open_store(settings) as store:
            yield Runner(
                store,
                executor,
                home=settings.home,
                clock=SystemClock(),
                on_progress=on_progress,
                options=runner_options(settings, use_cache=use_cache, slot_group=slot_group),
                artifacts=settings.artifacts or None,
                ui_url=settings.ui_url,
            )
        cancel = False
    finally:
        executor.close(cancel=cancel)


def create_manual_run(
    runner: Runner,
    dag: Dag,
    flow: FlowRef,
    timing: FlowTiming,
    *,
    logical_date: datetime | None = None,
) -> RunRecord:
    """Record a manual run of *dag* (``rota run``, ``flow.run()``): for *logical_date* when given
    (the run its schedule makes for that date), else for now.

    Raises:
        UserError: *logical_date* is not one of the schedule's, or the flow has a run for it.
        PoolError: a task names a pool that does not exist or needs more slots than it has.
    """
    from rota.engine.manual import create_manual
    from rota.engine.slots import check_pools

    check_pools(runner.store, dag, runner.clock.now())  # a missing pool: before any write
    return create_manual(
        runner.store,
        lambda t: runner.create(dag, flow, timing=t),
        flow.name,
        timing,
        runner.clock.now,
        logical_date=logical_date,
        run_type="manual",
    )


def aware_logical_date(flow: str, timing: FlowTiming, when: datetime) -> datetime:
    """*when* as an aware datetime (a naive one is wall time in the flow's zone, read by the
    schedule's DST policy), checked to be one of the schedule's logical dates.

    Raises:
        UserError: it is not a datetime, or not a logical date of the schedule.
    """
    from zoneinfo import ZoneInfo

    from rota.engine.manual import timing_at
    from rota.model.walltime import resolve

    if not isinstance(when, datetime):
        raise UserError(f"a logical date must be a datetime, got {when!r}")
    if when.tzinfo is None:
        zone = timing.schedule.timezone if timing.schedule is not None else timing.timezone
        when = resolve(when, ZoneInfo(zone))
    timing_at(flow, timing, when, "manual")
    return when


def run_to_resume(store: Store, run_id: str | None, last: str | None = None) -> RunRecord:
    """The run *run_id* (whole, or a unique prefix), or (with *last*) the newest unfinished run
    of flow *last*.

    Raises:
        UserError: neither or both were given (``AmbiguousRunId``: the prefix matches several).
        NotFound: no such run, or flow *last* has no unfinished run.
    """
    from rota.engine.runref import UNFINISHED, find_run, newest_run

    if (run_id is None) == (last is None):
        raise UserError("give either RUN_ID or --last FLOW")
    if run_id is not None:
        return find_run(store, run_id)
    return newest_run(store, last, UNFINISHED)


def flow_of_run(run: RunRecord) -> LoadedFlow:
    """The flow *run* was made from, loaded again from the file the store names.

    Raises:
        FlowNotFound: the run records no flow file (a flow defined in a notebook: give the flow
            object itself, ``rota.resume(run_id, flow=...)``), or the file has no such flow.
        FlowLoadError: the file no longer loads.
    """
    from rota.engine.loader import resolve_target

    if not run.flow_path:
        raise FlowNotFound(
            f"run {run.run_id} records no flow file, so its code cannot be loaded again "
            f"(a flow defined in a notebook: from Python, rota.resume({run.run_id!r}, flow=...))"
        )
    return resolve_target(f"{run.flow_path}:{run.flow}")


def build_for_run(
    run: RunRecord,
    loaded: LoadedFlow,
    given: Mapping[str, Any],
    environ: Mapping[str, str],
    *,
    override: bool = False,
) -> Dag:
    """*loaded* built with *run*'s parameters.

    A secret parameter the store does not keep comes from *given* or ``ROTA_PARAM_<NAME>`` in
    *environ*, or is the flow's default when the run used that. With *override*, *given* may
    replace any of the run's parameters (``rota tasks test --run R -p x=1``); without, only
    those (a resume re-runs the run as it was).

    Raises:
        ParameterError: a secret parameter's value cannot be found (the message names it), or
            (without *override*) *given* names a parameter the store keeps.
        UserError: *run* is not a run of *loaded*, or the flow no longer builds.
    """
    from rota.model.secrets import run_params, unstored_params

    if loaded.name != run.flow:
        raise UserError(f"run {run.run_id} is a run of flow {run.flow!r}, not of {loaded.name!r}")
    again = given
    if override:
        unstored = unstored_params(run.params)
        again = {k: v for k, v in given.items() if k in unstored}
    values = run_params(run.run_id, run.params, loaded.definition.params, again, environ)
    if override:
        values.update(given)
    return loaded.build(values)
