"""``rota runs prune``: forget old runs, their logs and their outputs, saying what that frees."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Final

import click

from rota.cli.commands import runs_group
from rota.cli.main import CliContext, open_store
from rota.cli.runarg import complete_flow_names

_AGE: Final = re.compile(r"^\s*(\d+)\s*([wdhm])\s*$")
_UNITS: Final = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}


class Age(click.ParamType[timedelta, Any]):
    """An age such as ``30d``, ``2w``, ``12h`` or ``90m``."""

    name = "age"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        found = _AGE.match(str(value))
        if found is None or int(found.group(1)) == 0:
            self.fail(f"{value!r} is not an age: write a count and a unit, e.g. 30d, 2w, 12h, 90m")
        return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


def size(count: int) -> str:
    """Bytes as a person reads them: ``512 B``, ``3.4 KiB``, ``12.0 MiB``, ``1.2 GiB``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@runs_group.command("prune")
@click.option(
    "--older-than", "age", type=Age(), required=True, metavar="AGE",
    help="Prune runs that ended more than AGE ago: 30d, 2w, 12h or 90m.",
)  # fmt: skip
@click.option("--flow", shell_complete=complete_flow_names, help="Only runs of this flow.")
@click.option("--dry-run", is_flag=True, help="Say what would be pruned and freed; delete nothing.")
@click.pass_obj
def runs_prune(ctx: CliContext, age: timedelta, flow: str | None, dry_run: bool) -> None:
    """Delete runs that ended more than AGE ago: their rows, logs and outputs.

    Queued and running runs are never pruned. A run whose outputs a newer run's cache hits still
    read is kept (and named). Dataset versions and uses are kept as lineage. Prints the runs,
    attempts, log and output bytes it frees (or, with --dry-run, would free).

    \b
    Examples:
      rota runs prune --older-than 30d --dry-run
      rota runs prune --older-than 2w --flow churn
    """
    from rota.artifacts.store import open_artifact_store
    from rota.engine.prune import plan_prune, prune
    from rota.model.schedule import SystemClock

    cutoff = SystemClock().now() - age
    logs = ctx.settings.logs_dir
    with open_store(ctx.settings) as store:
        plan = plan_prune(store, cutoff, logs, flow)
        if not dry_run:
            prune(store, plan, logs, open_artifact_store(ctx.settings.artifacts))
    verb = "would free" if dry_run else "freed"
    ctx.console.print(
        f"{'would prune' if dry_run else 'pruned'} {len(plan.runs)} run(s) that ended before "
        f"{cutoff:%Y-%m-%d %H:%M:%S} UTC: {verb} {plan.attempts} attempt row(s), "
        f"{size(plan.log_bytes)} of logs, {size(plan.output_bytes)} of outputs",
        highlight=False,
        soft_wrap=True,
    )
    for run in plan.runs if dry_run else ():
        ctx.console.print(f"  {run.run_id}  {run.flow}  {run.state.value}", highlight=False)
    for run in plan.kept:
        users = ", ".join(run.reused_by[:3]) + (" and more" if len(run.reused_by) > 3 else "")
        ctx.console.print(
            f"kept {run.run_id}: its outputs are cache hits of run(s) {users}",
            highlight=False,
            soft_wrap=True,
        )
