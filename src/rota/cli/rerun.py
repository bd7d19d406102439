"""``rota resume``, ``rota clear`` and ``rota mark``: run again what did not succeed, or what a
person chose; set a task's state by hand."""

from __future__ import annotations

from typing import Any

import click

from rota.cli.address import parse_task
from rota.cli.commands import _drive, _finish, executor_options, tasks_option
from rota.cli.main import CliContext, cli, open_store, parse_params
from rota.cli.runarg import pick_run, run_argument


def _load_run_flow(
    ctx: CliContext,
    run_id: str | None,
    last: str | None,
    raw_params: tuple[str, ...] = (),
    *,
    resume: bool = False,
) -> tuple[Any, Any, Any, Any]:
    """The run named by RUN_ID (or a prefix) or --last, its flow loaded from the run's flow file,
    the flow built with the run's parameters, and the :class:`~rota.engine.resume.ParamChange`
    that *raw_params* (``-p``) make: a secret the store does not keep given again, or a change.
    """
    import os

    from rota.engine.resume import resume_params
    from rota.engine.runref import UNFINISHED
    from rota.engine.session import flow_of_run
    from rota.model.dag import REQUIRED

    with open_store(ctx.settings) as store:
        run = pick_run(store, run_id, last, states=UNFINISHED if resume else None)
    loaded = flow_of_run(run)
    given = parse_params(loaded, raw_params)
    defaults = {p.name: p.default for p in loaded.definition.params if p.default is not REQUIRED}
    change = resume_params(run, loaded.definition.params, given, os.environ, defaults)
    return run, loaded, loaded.build(change.values), change


def _say_plan(ctx: CliContext, run: Any, plan: Any, change: Any) -> None:
    out = ctx.err
    out.print(
        f"resuming run {run.run_id} of flow {run.flow}: {len(plan.reasons)} task(s) to run, "
        f"{len(plan.kept)} succeeded task(s) kept",
        highlight=False,
    )
    for tid, why in plan.reasons.items():
        out.print(f"  {tid}: {why}", highlight=False, soft_wrap=True)
    for name, moved in change.changes.items():
        kept = f"; the {len(plan.kept)} kept task(s) keep what they made with the old value" * bool(
            plan.kept
        )
        out.print(
            f"  parameter {name}: {moved['from']!r} -> {moved['to']!r} for the tasks that run "
            f"again{kept} (recorded on the run)",
            highlight=False,
            soft_wrap=True,
        )


@cli.command("resume")
@run_argument(resume=True)
@click.option(
    "-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
    help="Change a parameter for the tasks that run again (recorded on the run), or give again "
    "a secret parameter the store does not keep.",
)  # fmt: skip
@executor_options
@tasks_option
@click.pass_obj
def resume_cmd(
    ctx: CliContext,
    run_id: str | None,
    last: str | None,
    params: tuple[str, ...],
    executor: str | None,
    workers: int | None,
    dask_address: str | None,
    artifacts: str | None,
    as_json: bool,
    show_tasks: bool,
) -> None:
    """Continue a failed or interrupted run: only what did not succeed runs again.

    RUN_ID may be any unique prefix of a run id; --last [FLOW] is the newest unfinished run (of
    FLOW). A task whose code changed since it succeeded runs again with everything downstream of
    it. -p KEY=VALUE changes a parameter for the tasks that run again; the tasks kept keep the
    outputs they made with the old value (rota clear one to run it again too), and the change is
    recorded on the run (rota runs show). A secret parameter given to the run is not stored:
    give it again with -p, or set ROTA_PARAM_<NAME>.

    \b
    Examples:
      rota resume 20260101T0300
      rota resume --last churn -p threshold=0.8
    """
    run, loaded, dag, change = _load_run_flow(ctx, run_id, last, params, resume=True)

    def go(runner: Any) -> Any:
        def say(plan: Any) -> None:
            _say_plan(ctx, run, plan, change)

        return lambda: runner.resume(run.run_id, dag, loaded.ref, on_plan=say, params=change)

    ctx.placement = {"dask_address": dask_address, "artifacts": artifacts}
    summary = _drive(ctx, executor, workers, as_json, go)
    _finish(ctx, summary, dag, as_json, show_tasks=show_tasks)


@cli.command("clear")
@run_argument()
@click.option(
    "--task", "tasks", multiple=True, required=True, metavar="ID",
    help="Task to reset; ID[N] (or ID@N) is instance N of a mapped task. Repeatable.",
)  # fmt: skip
@click.option("--downstream", is_flag=True, help="Also every task downstream of those.")
@click.option("--upstream", is_flag=True, help="Also every task upstream of those.")
@click.pass_obj
def clear_cmd(
    ctx: CliContext,
    run_id: str | None,
    last: str | None,
    tasks: tuple[str, ...],
    downstream: bool,
    upstream: bool,
) -> None:
    """Reset tasks of RUN_ID so that `rota resume RUN_ID` runs them again.

    RUN_ID may be any unique prefix of a run id; --last [FLOW] is the newest run (of FLOW).
    A cleared mapped task runs again its instances that did not succeed; --task ID[N] also runs
    instance N again, even if it succeeded. Each cleared task has its full retries again.

    \b
    Examples:
      rota clear 20260101T0300 --task train --downstream
      rota clear --last churn --task 'fit[3]'
    """
    from rota.engine.runner import clear_tasks
    from rota.model.schedule import SystemClock

    addresses = [parse_task(text) for text in tasks]
    named: dict[str, list[int]] = {}
    for a in addresses:
        if a.index is not None:
            named.setdefault(a.task_id, []).append(a.index)
    run, _loaded, dag, _change = _load_run_flow(ctx, run_id, last)
    with open_store(ctx.settings) as store:
        cleared = clear_tasks(
            store, run.run_id, dag, [a.task_id for a in addresses], now=SystemClock().now(),
            downstream=downstream, upstream=upstream, instances=named,
        )  # fmt: skip
    ctx.console.print(
        f"cleared {len(cleared)} task(s) of run {run.run_id}: {', '.join(cleared)}; "
        f"run `rota resume {run.run_id}` to run them",
        highlight=False,
        soft_wrap=True,
    )


@cli.command("mark")
@run_argument()
@click.option(
    "--task", "tasks", multiple=True, required=True, metavar="ID", help="Task to mark. Repeatable."
)  # fmt: skip
@click.option(
    "--state", "state", required=True, type=click.Choice(["success", "failed"]),
    help="The state to give the tasks.",
)  # fmt: skip
@click.option("--downstream", is_flag=True, help="Also every task downstream of those.")
@click.option("--upstream", is_flag=True, help="Also every task upstream of those.")
@click.pass_obj
def mark_cmd(
    ctx: CliContext,
    run_id: str | None,
    last: str | None,
    tasks: tuple[str, ...],
    state: str,
    downstream: bool,
    upstream: bool,
) -> None:
    """Set tasks of RUN_ID to success or failed by hand, without running them (Airflow's
    "mark success" / "mark failed").

    A task marked success stored no output: its downstream tasks get None from it. Then, as in
    Airflow, the failed and upstream-failed tasks below the named ones are cleared and the run
    queued, so that `rota resume RUN_ID` runs them.

    \b
    Examples:
      rota mark 20260101T0300 --task fetch --state success
      rota mark --last churn --task train --state failed --downstream
    """
    from rota.engine.marking import mark_tasks
    from rota.model.schedule import SystemClock
    from rota.model.states import TaskState

    run, _loaded, dag, _change = _load_run_flow(ctx, run_id, last)
    with open_store(ctx.settings) as store:
        done = mark_tasks(
            store, run.run_id, dag, tasks, TaskState(state), now=SystemClock().now(),
            downstream=downstream, upstream=upstream,
        )  # fmt: skip
    said = ", ".join(done.marked) or f"none (already {state})"
    if done.cleared:
        said += f"; cleared {', '.join(done.cleared)}: run `rota resume {run.run_id}` to go on"
    ctx.console.print(
        f"marked {len(done.marked)} task(s) of run {run.run_id} {state}: {said}",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
