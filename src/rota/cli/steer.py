"""``rota cancel``, ``rota pause``, ``rota unpause``: steering runs and schedules by hand (the web
UI's buttons call the same engine functions)."""

from __future__ import annotations

import click

from rota.cli.main import CliContext, cli, open_store


@cli.command("cancel")
@click.argument("run_id")
@click.pass_obj
def cancel_cmd(ctx: CliContext, run_id: str) -> None:
    """Cancel RUN_ID: its running tasks fail, the others are skipped, the run fails.

    A run driven by a live runner is asked to stop: the runner cancels it within seconds (at its
    next heartbeat) and kills what runs. `rota resume RUN_ID` runs it again.
    """
    from rota.engine.steer import cancel_run
    from rota.model.schedule import SystemClock

    with open_store(ctx.settings) as store:
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


@cli.command("pause")
@click.argument("flow")
@click.pass_obj
def pause_cmd(ctx: CliContext, flow: str) -> None:
    """Pause FLOW's schedule: the scheduler makes no runs of it and starts none of its runs."""
    _pause(ctx, flow, True)


@cli.command("unpause")
@click.argument("flow")
@click.pass_obj
def unpause_cmd(ctx: CliContext, flow: str) -> None:
    """Unpause FLOW's schedule."""
    _pause(ctx, flow, False)
