"""``rota runs cancel``, ``rota flows pause``, ``rota flows unpause``: steering runs and schedules
by hand (the web UI's buttons call the same engine functions). ``rota cancel``, ``rota pause`` and
``rota unpause`` are the same commands under shorter names."""

from __future__ import annotations

import click

from rota.cli.commands import flows_group, runs_group
from rota.cli.main import CliContext, cli, open_store
from rota.cli.runarg import complete_flow_names, pick_run, run_argument


@click.command("cancel")
@run_argument()
@click.pass_obj
def cancel_cmd(ctx: CliContext, run_id: str | None, last: str | None) -> None:
    """Cancel RUN_ID: its running tasks fail, the others are skipped, the run fails.

    RUN_ID may be any unique prefix of a run id; --last [FLOW] is the newest run (of FLOW).
    A run driven by a live runner is asked to stop: the runner cancels it within seconds (at its
    next heartbeat) and kills what runs. `rota resume RUN_ID` runs it again. `rota cancel` is the
    same command.

    \b
    Examples:
      rota runs cancel 20260101T0300
      rota runs cancel --last churn
    """
    from rota.engine.steer import cancel_run
    from rota.model.schedule import SystemClock

    with open_store(ctx.settings) as store:
        run_id = pick_run(store, run_id, last).run_id
        done = cancel_run(store, run_id, by="rota cancel", now=SystemClock().now())
    if done.how == "cancelled":
        ctx.console.print(f"run {run_id} cancelled", highlight=False)
    else:
        ctx.console.print(
            f"run {run_id} is being driven: its runner was asked to cancel it", highlight=False
        )


def _pause(ctx: CliContext, flow: str, paused: bool) -> None:
    from rota.engine.steer import set_paused
    from rota.model.schedule import SystemClock

    with open_store(ctx.settings) as store:
        changed = set_paused(store, flow, paused, SystemClock().now())
    what = "paused" if paused else "unpaused"
    note = "" if changed else " already"
    ctx.console.print(f"flow {flow} was{note} {what}", highlight=False)


@click.command("pause")
@click.argument("flow", shell_complete=complete_flow_names)
@click.pass_obj
def pause_cmd(ctx: CliContext, flow: str) -> None:
    """Pause FLOW's schedule: the scheduler makes no runs of it and starts none of its runs.

    `rota pause` is the same command.

    \b
    Example:
      rota flows pause churn
    """
    _pause(ctx, flow, True)


@click.command("unpause")
@click.argument("flow", shell_complete=complete_flow_names)
@click.pass_obj
def unpause_cmd(ctx: CliContext, flow: str) -> None:
    """Unpause FLOW's schedule. `rota unpause` is the same command.

    \b
    Example:
      rota flows unpause churn
    """
    _pause(ctx, flow, False)


runs_group.add_command(cancel_cmd)
flows_group.add_command(pause_cmd)
flows_group.add_command(unpause_cmd)
for _alias in (cancel_cmd, pause_cmd, unpause_cmd):
    cli.add_command(_alias)
