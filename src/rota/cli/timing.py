"""The time commands: ``rota trigger``, ``rota scheduler``, ``rota backfill``, and the hidden
``rota _drive`` that the scheduler and backfills start once per run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from rota.cli.commands import _drive, _finish
from rota.cli.main import CliContext, cli, open_store, parse_params
from rota.errors import FlowNotFound, UserError

FLOWS_OPTION = click.option(
    "--flows",
    "flows_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of flow files to find FLOW names in (default: the flows setting, ROTA_FLOWS).",
)

_NAME_HINT = (
    "to name a flow by its name, pass --flows DIR or set ROTA_FLOWS (or flows in rota.toml)"
)


def flows_folder(ctx: CliContext, given: Path | None) -> Path | None:
    """The folder flow names are found in: --flows, else the ``flows`` setting."""
    return given if given is not None else ctx.settings.flows


def resolve_flow(target: str, flows_dir: Path | None) -> Any:
    """``PATH[:FLOW]`` as for ``rota run``, or the name of a flow in *flows_dir*.

    With a folder, a name is looked up in it first: a flow of that name wins over a file or folder
    of the same name in the working directory. Only a flow file itself (``nightly.py``, or
    ``nightly.py:FLOW``) is read as a path without looking in the folder. The folder is scanned
    the way the scheduler scans it (each file parsed in a subprocess), so a broken or hanging file
    elsewhere in it does not stop this command.

    Raises:
        FlowNotFound: no such file, or no flow of that name in the folder.
        FlowLoadError: the flow's file does not load.
    """
    from rota.engine.loader import resolve_target

    path_part = target.rsplit(":", 1)[0] if ":" in target else target
    if flows_dir is None and not Path(path_part).exists() and not Path(target).exists():
        raise FlowNotFound(f"no flow file or folder named {target!r} here; {_NAME_HINT}")
    if flows_dir is None or Path(target).is_file() or Path(path_part).is_file():
        return resolve_target(target)
    from rota.engine.flowdir import FlowFolder

    scan = FlowFolder(flows_dir).scan()
    info = scan.flows.get(target)
    if info is not None:
        return resolve_target(f"{info.path}:{target}")
    if Path(path_part).exists() or Path(target).exists():
        return resolve_target(target)
    bad = [f"{p}: {e}" for p, e in scan.errors.items() if f"{target!r}" in e]
    if bad:
        raise FlowNotFound(bad[0])
    known = ", ".join(sorted(scan.flows)) or "none"
    raise FlowNotFound(f"no file or flow named {target!r} in {flows_dir} (flows: {known})")


def parse_date(text: str, option: str) -> datetime:
    """A date or datetime in ISO form; naive means UTC.

    Raises:
        UserError: not a date.
    """
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{option}: not an ISO date or datetime: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def read_date(text: str, option: str, timing: Any) -> datetime:
    """*text* (ISO) as an aware datetime; without a zone it is wall time in the flow's zone, read
    by the schedule's DST policy (a repeated time is its second occurrence).

    Raises:
        UserError: not an ISO date or datetime.
    """
    from zoneinfo import ZoneInfo

    from rota.model.walltime import resolve

    value = parse_date(text, option)
    if datetime.fromisoformat(text).tzinfo is not None:
        return value
    zone = timing.schedule.timezone if timing.schedule is not None else timing.timezone
    return resolve(value.replace(tzinfo=None), ZoneInfo(zone))


@cli.command("_drive", hidden=True)
@click.argument("run_id")
@click.option("--lifeline", is_flag=True, help="Stop the run when stdin closes.")
@click.option("--claimed-by", "claim", help="Take the run over from this scheduler's claim.")
@click.pass_obj
def drive_cmd(ctx: CliContext, run_id: str, lifeline: bool, claim: str | None) -> None:
    """Drive RUN_ID (already in the store) to its end: used by the scheduler and backfills.

    Exits 3 when another runner has the run, 4 when this one lost its lease while driving, 75
    when the store is out of reach: none of them is the run's outcome.
    """
    from rota.engine.driver import drive_existing, load_for_run
    from rota.engine.launcher import EXIT_BUSY, EXIT_LEASE_LOST, EXIT_STORE_DOWN, watch_lifeline
    from rota.engine.lease import RunBusy
    from rota.engine.slots import SlotGroup
    from rota.errors import LeaseLost, StoreUnavailable

    if lifeline:
        watch_lifeline()
    group = SlotGroup.from_environ(ctx.environ)
    try:
        with open_store(ctx.settings) as store:
            run = store.get_run(run_id)
        _, dag = load_for_run(run)  # load errors before any executor starts
        summary = _drive(
            ctx, None, None, True, lambda runner: lambda: drive_existing(runner, run_id, claim),
            slot_group=group,
        )  # fmt: skip
    except (RunBusy, LeaseLost, StoreUnavailable) as err:
        ctx.err.print(f"rota: {err}", highlight=False, soft_wrap=True)
        codes = {RunBusy: EXIT_BUSY, LeaseLost: EXIT_LEASE_LOST, StoreUnavailable: EXIT_STORE_DOWN}
        ctx.exit_code = next(code for kind, code in codes.items() if isinstance(err, kind))
        return
    _finish(ctx, summary, dag, True)


@cli.command("trigger")
@click.argument("target", metavar="FLOW")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Set a flow parameter."
)
@click.option(
    "--logical-date", metavar="DATE",
    help="Run for this logical date of the schedule (ISO; no zone: the flow's). Default: now.",
)  # fmt: skip
@FLOWS_OPTION
@click.pass_obj
def trigger_cmd(
    ctx: CliContext,
    target: str,
    params: tuple[str, ...],
    logical_date: str | None,
    flows_dir: Path | None,
) -> None:
    """Queue a run of FLOW (PATH[:FLOW] or a flow name in --flows) for the scheduler to run.

    Without --logical-date the run's logical date is the trigger time and its data interval the
    last complete one, as in Airflow; with it, the run is the one the schedule makes for that date.

    \b
    Example:
      rota trigger churn --flows flows -p n_rows=200
    """
    from rota.engine.manual import create_manual, timing_at
    from rota.engine.runner import create_run, dag_tasks

    loaded = resolve_flow(target, flows_folder(ctx, flows_dir))
    dag = loaded.build(parse_params(loaded, params))
    refuse_given_secrets(dag)
    flow_timing = loaded.definition.timing
    when = read_date(logical_date, "--logical-date", flow_timing) if logical_date else None
    if when is not None:
        timing_at(loaded.name, flow_timing, when, "triggered")  # refused before anything is stored
    ref = loaded.ref
    with open_store(ctx.settings) as store:
        from rota.engine.slots import check_pools

        check_pools(store, dag, datetime.now(UTC))
        record = create_manual(
            store,
            lambda t: create_run(
                store, ref, dag_tasks(dag), dag.params, datetime.now(UTC),
                timing=t, defaults=dag.param_defaults,
            ),
            ref.name, flow_timing, lambda: datetime.now(UTC),
            logical_date=when, run_type="triggered",
        )  # fmt: skip
        store.upsert_flow(ref.name, ref.path, ref.code_hash, record.created_at)
    assert record.logical_date is not None
    ctx.console.print(
        f"run {record.run_id} of flow {ref.name} queued for {record.logical_date.isoformat()}; "
        "the scheduler will run it",
        highlight=False,
    )


def refuse_given_secrets(dag: Any) -> None:
    """Refuse a secret parameter given in clear to a run another process will drive.

    Raises:
        ParameterError: the store would not keep its value, so the scheduler could not run it.
    """
    from rota.errors import ParameterError
    from rota.model.secrets import given_secrets

    names = given_secrets(dag.params, dag.param_defaults)
    if names:
        raise ParameterError(
            f"parameter {names[0]!r} is secret and the store does not keep secrets, so a queued "
            "run cannot carry it: make its default a rota.Secret (read by the worker from its "
            "environment), or use rota run"
        )


def driver_environ(ctx: CliContext) -> dict[str, str]:
    """The environment of driver processes: ours, with every setting made explicit (so a driver
    started elsewhere finds the same store, whatever configuration files it would find)."""
    import os

    return {**os.environ, **ctx.settings.environment()}


@cli.command("scheduler")
@FLOWS_OPTION
@click.option(
    "--parallelism", type=click.IntRange(min=1), default=32, show_default=True,
    help="Most tasks queued or running at once over all the runs this scheduler drives "
    "(Airflow's parallelism).",
)  # fmt: skip
@click.option(
    "--max-active-runs", type=click.IntRange(min=1), default=16, show_default=True,
    help="Most runs driven at once, over all flows.",
)  # fmt: skip
@click.option(
    "--tick", type=click.FloatRange(min=0.05), default=5.0, show_default=True,
    help="Seconds between scheduling passes.",
)  # fmt: skip
@click.option(
    "--parse-timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
    help="Seconds a flow file may take to load before it is killed and reported.",
)  # fmt: skip
@click.option(
    "--workers-per-run", type=click.IntRange(min=1),
    help="Worker processes of each run's executor (default: ROTA_WORKERS, else the CPUs).",
)  # fmt: skip
@click.option("--once", is_flag=True, help="One pass, then wait for the runs it started.")
@click.pass_obj
def scheduler_cmd(
    ctx: CliContext,
    flows_dir: Path | None,
    parallelism: int,
    max_active_runs: int,
    tick: float,
    parse_timeout: float,
    workers_per_run: int | None,
    once: bool,
) -> None:
    """Run flows on their schedules: watch --flows DIR, create due runs, and drive them.

    \b
    Examples:
      rota scheduler --flows flows
      rota scheduler --flows flows --once
    """
    from rota.cli import render
    from rota.engine.flowdir import FlowFolder
    from rota.engine.launcher import DriverLauncher
    from rota.engine.lease import RunnerId
    from rota.engine.scheduler import Scheduler, SchedulerOptions
    from rota.engine.slots import SlotGroup
    from rota.model.schedule import SystemClock

    flows_dir = flows_folder(ctx, flows_dir)
    if flows_dir is None:
        raise UserError(
            "rota scheduler needs a folder of flow files: pass --flows DIR or set ROTA_FLOWS "
            "(or flows in rota.toml)"
        )
    if not flows_dir.is_dir():
        raise FlowNotFound(f"no such folder: {flows_dir}")
    exclusive = ctx.settings.database_url.startswith("sqlite")
    options = SchedulerOptions(
        max_active_runs=max_active_runs, tick=tick, exclusive=exclusive,
        stale_after=timedelta(seconds=ctx.settings.heartbeat_timeout),
        host=ctx.settings.hostname or None,
    )  # fmt: skip
    environ = driver_environ(ctx)
    if workers_per_run is not None:
        environ["ROTA_WORKERS"] = str(workers_per_run)
    # the drivers' attempts share this scheduler's task slots, counted in the store
    environ.update(SlotGroup(str(RunnerId.current()), parallelism).environ())
    launcher = DriverLauncher(environ, ctx.settings.home / "logs" / "drivers")
    with open_store(ctx.settings) as store:
        sched = Scheduler(
            store, FlowFolder(flows_dir, parse_timeout=parse_timeout), launcher, SystemClock(),
            options, on_tick=lambda r: render.say_tick(ctx.err, r),
        )  # fmt: skip
        sched.start()
        ctx.err.print(
            f"scheduler {sched.me} watching {flows_dir} (tick {tick:g}s, parallelism "
            f"{parallelism} tasks, max {max_active_runs} runs)",
            highlight=False,
        )
        try:
            _loop(sched, launcher, tick, once, lambda end: render.say_end(ctx.err, end))
        finally:
            sched.close()


def _loop(
    sched: Any, launcher: Any, tick: float, once: bool, say_end: Callable[[Any], None]
) -> None:
    import time

    while True:
        started = time.monotonic()
        sched.tick()
        if once:
            while launcher.active():
                for end in launcher.wait_any(1.0):
                    say_end(end)
            return
        while (left := tick - (time.monotonic() - started)) > 0:
            for end in launcher.wait_any(min(left, 0.5)):
                say_end(end)
            if not launcher.active():
                time.sleep(max(0.0, min(left, 0.5)))
