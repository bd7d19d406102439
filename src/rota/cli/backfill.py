"""``rota backfill``: a run for every past interval of a flow's schedule, planned, shown, driven."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click

from rota.cli.main import CliContext, cli, open_store, parse_params
from rota.cli.timing import FLOWS_OPTION, driver_environ, flows_folder, read_date, resolve_flow
from rota.engine.backfillopts import MAX_INTERVALS, RERUN_LEVELS
from rota.errors import UserError

if TYPE_CHECKING:  # rich and the engine load when a backfill runs, not for `rota --help`
    from rich.table import Table
    from rich.text import Text

    from rota.engine.backfill import BackfillEvent, BackfillSummary, PlanItem

_ACTION_STYLE = {"run": "cyan", "resume": "magenta", "rerun": "yellow", "skip": "grey50"}
_OUTCOME_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "interrupted": "magenta",
    "taken": "yellow",
}


@cli.command("backfill")
@click.argument("target", metavar="FLOW")
@click.option(
    "--start", "start_text", required=True, metavar="DATE",
    help="First logical date (ISO); one between two of the schedule's moves forward to the next.",
)  # fmt: skip
@click.option(
    "--end", "end_text", required=True, metavar="DATE",
    help="Latest logical date included (ISO).",
)  # fmt: skip
@click.option(
    "--rerun", type=click.Choice(RERUN_LEVELS), default="none", show_default=True,
    help="Run existing runs again: failed ones, also those whose code changed, or all.",
)  # fmt: skip
@click.option(
    "--max-active-runs", type=click.IntRange(min=1), default=None,
    help="Most runs driven at once (default: the flow's max_active_runs).",
)  # fmt: skip
@click.option(
    "--max-intervals", type=click.IntRange(min=1), default=MAX_INTERVALS, show_default=True,
    help="Refuse a range of more intervals than this.",
)  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--reverse", is_flag=True, help="Newest interval first.")
@FLOWS_OPTION
@click.option(
    "-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Set a flow parameter."
)
@click.pass_obj
def backfill_cmd(
    ctx: CliContext,
    target: str,
    start_text: str,
    end_text: str,
    rerun: str,
    max_active_runs: int | None,
    max_intervals: int,
    dry_run: bool,
    reverse: bool,
    flows_dir: Path | None,
    params: tuple[str, ...],
) -> None:
    """Run FLOW for every schedule interval whose logical date lies in [--start, --end].

    As in Airflow: --end is the latest logical date included, and a --start between two of the
    schedule's logical dates moves forward to the next one, so --start 2026-03-01 --end 2026-03-30
    of a daily flow is 30 runs. A date without a time zone is read in the flow's zone. FLOW is
    PATH[:FLOW] or a flow name in --flows (the folder's flow wins over a file or folder of that
    name here). A date whose run succeeded with the current code is skipped; a run whose backfill
    was killed is resumed (only its unfinished tasks run); dates another runner holds are reported
    as taken. Exit 1 if any run failed.

    \b
    Examples:
      rota backfill flows/churn.py --start 2026-01-01 --end 2026-03-31
      rota backfill churn --flows flows --start 2026-01-01 --end 2026-01-07 --dry-run
    """
    from rota.engine.backfill import check_range_size, plan_backfill
    from rota.model.schedule import SystemClock

    loaded = resolve_flow(target, flows_folder(ctx, flows_dir))
    dag = loaded.build(parse_params(loaded, params))
    timing = loaded.definition.timing
    schedule = timing.schedule
    if schedule is None:
        raise UserError(f"flow {loaded.name!r} has no cron or timedelta schedule to backfill")
    start = read_date(start_text, "--start", timing)
    end = read_date(end_text, "--end", timing)
    check_range_size(loaded.name, schedule, start, end, max_intervals)  # before the store opens
    with open_store(ctx.settings) as store:
        items = plan_backfill(
            store, loaded.name, dag, schedule, start, end,
            rerun=rerun, reverse=reverse, now=SystemClock().now(), max_intervals=max_intervals,
        )  # fmt: skip
        zone = ZoneInfo(schedule.timezone)
        if not items:
            why = schedule.why_empty(start, end)
            say = f"backfill of flow {loaded.name}: 0 intervals: {why}"
            ctx.err.print(say, highlight=False, soft_wrap=True)
        if dry_run or not items:
            ctx.console.print(_plan_table(loaded.name, items, zone))
            return
        limit = max_active_runs or timing.max_active_runs
        _say_plan(ctx, loaded.name, items, limit)
        summary = _execute(ctx, store, items, dag, loaded.ref, limit, zone)
    _say_summary(ctx, loaded.name, summary, zone)
    ctx.exit_code = summary.exit_code


def _when(item: PlanItem, zone: ZoneInfo) -> str:
    """The interval in the flow's zone; dates alone when both ends are at midnight there."""
    start, end = item.interval.start.astimezone(zone), item.interval.end.astimezone(zone)
    fmt = "%Y-%m-%d" if start.time() == end.time() == time(0) else "%Y-%m-%d %H:%M"
    return f"{start:{fmt}} → {end:{fmt}}"


def _plan_table(flow: str, items: list[PlanItem], zone: ZoneInfo) -> Table:
    from rich.table import Table

    from rota.cli.console import line

    table = Table(
        title=f"backfill of flow {flow}: {len(items)} interval(s) ({zone.key})",
        title_justify="left",
    )
    table.add_column("interval", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("reason", ratio=1)
    table.add_column("run", no_wrap=True)
    for item in items:
        style = _ACTION_STYLE.get(item.action, "yellow")
        table.add_row(
            _when(item, zone), line((item.action, style)), item.reason, item.run_id or "-"
        )
    return table


def _say_plan(ctx: CliContext, flow: str, items: list[PlanItem], limit: int) -> None:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.action] = counts.get(item.action, 0) + 1
    parts = ", ".join(f"{n} {action}" for action, n in counts.items())
    ctx.err.print(
        f"backfill of flow {flow}: {len(items)} interval(s): {parts}; at most {limit} at once",
        highlight=False,
    )


def _execute(
    ctx: CliContext,
    store: Any,
    items: list[PlanItem],
    dag: Any,
    ref: Any,
    limit: int,
    zone: ZoneInfo,
) -> BackfillSummary:
    """Drive the plan with a progress bar (plain lines when not at a terminal). A Ctrl-C or
    SIGTERM stops the drivers, whose runs are interrupted for the next backfill to resume."""
    from rota.engine.backfill import Backfill
    from rota.engine.launcher import DriverLauncher
    from rota.model.schedule import SystemClock
    from rota.model.secrets import secret_environment

    # the drivers rebuild each run's parameters; a secret one, not stored, reaches them here
    environ = {**driver_environ(ctx), **secret_environment(dag.params)}
    launcher = DriverLauncher(environ, ctx.settings.home / "logs" / "drivers")
    try:
        with _reporter(ctx, len(items), zone) as on_event:
            backfill = Backfill(
                store, launcher, dag=dag, flow=ref, clock=SystemClock(),
                max_active_runs=limit, on_event=on_event,
            )  # fmt: skip
            return backfill.run(items)
    finally:
        launcher.close()


@contextmanager
def _reporter(ctx: CliContext, total: int, zone: ZoneInfo) -> Iterator[Any]:
    """An event hook: a rich progress bar at a terminal, one line per outcome otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rota.cli.console import line

    def outcome(event: BackfillEvent) -> Text:
        style = _OUTCOME_STYLE.get(event.outcome, "grey50")
        return line(f"{_when(event.item, zone)}  ", (event.outcome, style), f"  {event.detail}")

    if not ctx.err.is_terminal:

        def plain(event: BackfillEvent) -> None:
            if event.final:
                ctx.err.print(outcome(event), soft_wrap=True)

        yield plain
        return
    columns = (
        TextColumn("backfill"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.description}", markup=False),
    )  # fmt: skip
    with Progress(*columns, console=ctx.err, transient=False) as bar:
        task = bar.add_task("", total=total)
        running: set[str | None] = set()

        def show(event: BackfillEvent) -> None:
            if event.final:
                running.discard(event.run_id)
                bar.console.print(outcome(event), soft_wrap=True)
                bar.advance(task)
            else:
                running.add(event.run_id)
            bar.update(task, description=f"{len(running)} running")

        yield show


def _say_summary(ctx: CliContext, flow: str, summary: BackfillSummary, zone: ZoneInfo) -> None:
    for event in summary.taken:
        when = _when(event.item, zone)
        ctx.err.print(f"taken: {when} by run {event.run_id} ({event.detail})", highlight=False)
    for event in summary.failed:
        ctx.err.print(f"{event.outcome}: {event.detail}", style="red", highlight=False)
    counts = summary.counts
    ctx.console.print(
        f"backfill of flow {flow}: {counts['succeeded']} succeeded, {counts['failed']} failed, "
        f"{counts['interrupted']} interrupted, {counts['skipped']} skipped, "
        f"{counts['taken']} taken",
        highlight=False,
    )
