"""Driving a run that is already in the store, from its own record: the flow is loaded again from
the file the run was made from, built with the run's parameters, and run or resumed.

The scheduler daemon and ``rota backfill`` start one driver process per run (``rota _drive``, see
:mod:`rota.engine.launcher`), so each run has its own executor and lease, and a run whose driver
dies is resumed by the next one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from rota.engine.lease import RunBusy
from rota.engine.loader import LoadedFlow, resolve_target
from rota.engine.report import RunSummary
from rota.engine.runner import Runner
from rota.errors import FlowNotFound
from rota.model.dag import Dag
from rota.model.secrets import run_params
from rota.model.states import RunState, TaskState
from rota.store.base import RunRecord, Store


def load_for_run(
    run: RunRecord, environ: Mapping[str, str] | None = None
) -> tuple[LoadedFlow, Dag]:
    """The flow *run* was made from, built with its parameters.

    A secret parameter the store does not keep is read from ``ROTA_PARAM_<NAME>`` in *environ*
    (default: this process's environment), or is the flow's default if the run used that
    (:func:`rota.model.secrets.run_params`).

    Raises:
        FlowNotFound: the run records no flow file, or the file no longer defines the flow.
        ParameterError: a secret parameter's value cannot be found (the message names it).
        UserError: the flow no longer loads or builds.
    """
    if not run.flow_path:
        raise FlowNotFound(f"run {run.run_id} records no flow file; it cannot be driven here")
    loaded = resolve_target(f"{run.flow_path}:{run.flow}")
    env = os.environ if environ is None else environ
    values = run_params(run.run_id, run.params, loaded.definition.params, {}, env)
    return loaded, loaded.build(values)


def never_started(store: Store, run: RunRecord) -> bool:
    """Whether *run* is queued and none of its tasks has begun (a plain drive, not a resume)."""
    if run.state is not RunState.QUEUED:
        return False
    return all(
        a.state is TaskState.SCHEDULED and a.started_at is None and a.try_number == 1
        for a in store.attempts(run.run_id)
    )


def take_claim(runner: Runner, run_id: str, claim: str) -> None:
    """Take run *run_id* over from the scheduler that claimed it for this driver as *claim*.

    Raises:
        RunBusy: the run is no longer claimed so (another scheduler took the claim over).
    """
    if not runner.store.acquire(run_id, str(runner.me), expect=claim, at=runner.clock.now()):
        raise RunBusy(f"run {run_id} is no longer claimed by {claim}; another runner has it")


def drive_existing(runner: Runner, run_id: str, claim: str | None = None) -> RunSummary:
    """Drive run *run_id* to its end: a fresh queued run from the start, any other unfinished run
    as a resume (only what did not succeed runs again). With *claim*, the run is taken over from
    the scheduler's claim first (:func:`take_claim`).

    Raises:
        RunBusy: another live runner drives it.
        UserError: the run succeeded already, or its flow cannot be loaded.
    """
    run = runner.store.get_run(run_id)
    loaded, dag = load_for_run(run)
    if claim is not None:
        take_claim(runner, run_id, claim)
        run = runner.store.get_run(run_id)
    attempts = {a.task_id for a in runner.store.attempts(run_id) if a.map_index < 0}
    if never_started(runner.store, run) and attempts == set(dag.tasks):
        return runner.drive(run_id, dag, loaded.ref)
    return runner.resume(run_id, dag, loaded.ref)
