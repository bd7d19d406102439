"""``rota stats``: each task's failure rate from history, the flow's predicted and observed success,
and the retries a target needs (the maths is :mod:`rota.model.reliability`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rota.cli.main import CliContext, cli, open_store, parse_params
from rota.cli.timing import FLOWS_OPTION, flows_folder, resolve_flow
from rota.engine.stats import DEFAULT_LAST
from rota.errors import FlowNotFound, NotFound

if TYPE_CHECKING:
    from rich.table import Table

    from rota.model.reliability import FlowEstimate, Interval, TaskEstimate
    from rota.store.base import Store


def _target(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise click.BadParameter(f"{value!r} is not a probability in (0, 1]", ctx, param)
    return value


@cli.command("stats")
@click.argument("target", metavar="FLOW")
@click.option(
    "--last", type=click.IntRange(min=1, max=10**9), default=DEFAULT_LAST, show_default=True,
    help="How many of the flow's last finished runs to read.",
)  # fmt: skip
@click.option(
    "--target", "goal", type=float, default=0.99, show_default=True, callback=_target,
    help="The P(run succeeds) the recommended retries reach.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
    help="A flow parameter for building the flow (default: the newest run's).",
)  # fmt: skip
@FLOWS_OPTION
@click.pass_obj
def stats_cmd(
    ctx: CliContext,
    target: str,
    last: int,
    goal: float,
    as_json: bool,
    params: tuple[str, ...],
    flows_dir: Path | None,
) -> None:
    """Failure rates of FLOW's tasks over its last runs, and the retries a target needs.

    FLOW is PATH[:FLOW] or a flow name in --flows: its code gives each task's retries r. From
    the store, each task's failure probability per try p is estimated (failed tries / tries,
    a mapped task's instances counted as its tries) with a Wilson 95% interval; a run is
    predicted to succeed with P = prod(1 - p^(r+1)), shown beside the share of runs that did.

    \b
    Examples:
      rota stats churn --flows flows
      rota stats churn --last 50 --target 0.99
    """
    from rota.cli import render
    from rota.engine.stats import build_params, flow_stats

    with open_store(ctx.settings) as store:
        loaded = _resolve(store, target, flows_folder(ctx, flows_dir))
        newest = store.list_runs(loaded.name, 1, on_corrupt=lambda _bad: None)
        run_id, stored = (newest[0].run_id, newest[0].params) if newest else ("", {})
        given = parse_params(loaded, params)
        dag = loaded.build(build_params(run_id, loaded.definition.params, stored, given))
        est = flow_stats(store, dag, last=last, target=goal)
    if est.runs == 0:
        raise NotFound(f"flow {loaded.name!r} has no finished run in the store")
    if as_json:
        render.print_json(ctx.console, stats_json(est))
        return
    ctx.console.print(stats_table(est))
    for text in stats_lines(est):
        ctx.console.print(text, highlight=False, soft_wrap=True)


def _resolve(store: Store, target: str, flows_dir: Path | None) -> Any:
    """The flow TARGET names; a bare name the store knows but no --flows finds gets a hint.

    The store's record of where a flow's file was is never imported on its own say: the code
    that runs is the code the person named.
    """
    try:
        return resolve_flow(target, flows_dir)
    except FlowNotFound as err:
        record = store.get_flow(target) if ":" not in target else None
        if record is None or not record.path:
            raise
        raise FlowNotFound(
            f"{err}; its runs loaded it from {record.path}: "
            f"rota stats {record.path}:{target} (or --flows DIR)"
        ) from None


def prob(value: float | None) -> str:
    """A probability with four decimals; one that four decimals would show as 0 or 1 (but is
    not) as ``1 - 2.3e-07`` or ``2.3e-07``, so a near-certainty never reads as a certainty."""
    if value is None:
        return "-"
    text = f"{value:.4f}"
    if 0.0 < value < 1.0 and text == "1.0000":
        return f"1 - {1.0 - value:.2g}"
    if 0.0 < value < 1.0 and text == "0.0000":
        return f"{value:.2g}"
    return text


def _interval(value: Interval | None) -> str:
    return "-" if value is None else f"{prob(value.low)}-{prob(value.high)}"


def stats_table(est: FlowEstimate) -> Table:
    """One row per task: tries, failed tries, p̂ and its interval, retries, P(task), instances
    per run (when a task is mapped) and the retries the target needs."""
    from rich import box
    from rich.table import Table

    mapped = any(t.mapped for t in est.tasks)
    table = Table(
        title=f"flow {est.flow} · last {est.runs} finished runs · {est.succeeded} succeeded",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
        show_edge=False,
    )
    table.add_column("task", overflow="fold", min_width=6)
    for col in ("tries", "failed", "p̂", "95% interval", "retries", "P(task)"):
        table.add_column(col, justify="right", no_wrap=True)
    if mapped:
        table.add_column("per run", justify="right", no_wrap=True)
    table.add_column("needed", justify="right", no_wrap=True)
    for t in est.tasks:
        row = [t.task_id, str(t.attempts), str(t.failures), prob(t.p), _interval(t.interval)]
        row += [str(t.retries), prob(t.success)]
        if mapped:
            row.append(f"{t.instances:.4g}" if t.mapped else "-")
        row.append("-" if t.needed is None else str(t.needed))
        table.add_row(*row)
    return table


def stats_lines(est: FlowEstimate) -> list[str]:
    """The flow's predicted and observed success, and what the target needs."""
    out = [
        f"P(run succeeds) predicted: {prob(est.predicted)} with these retries, "
        f"{prob(est.without_retries)} without retries (P = prod(1 - p^(r+1)) over the tasks)",
        f"observed: {est.succeeded} of {est.runs} runs succeeded = {prob(est.observed)} "
        f"(95% interval {_interval(est.observed_interval)})",
    ]
    if est.needed_success is not None:
        total = sum(t.needed or 0 for t in est.tasks)
        out.append(
            f"target {est.target:g}: reached with the retries under 'needed' ({total} in all, "
            f"the fewest that do), P = {prob(est.needed_success)}"
        )
    else:
        always = [t.task_id for t in est.tasks if t.p == 1.0]
        why = f" ({', '.join(always)} failed every try)" if always else ""
        out.append(
            f"target {est.target:g} cannot be reached with at most {est.limit} retries per "
            f"task{why}"
        )
    if est.unmeasured:
        out.append("no try in these runs, left out of the products: " + ", ".join(est.unmeasured))
    return out


def _task_json(t: TaskEstimate) -> dict[str, Any]:
    return {
        "task": t.task_id,
        "attempts": t.attempts,
        "failures": t.failures,
        "p": t.p,
        "interval": None if t.interval is None else [t.interval.low, t.interval.high],
        "retries": t.retries,
        "success": t.success,
        "mapped": t.mapped,
        "instances_per_run": t.instances,
        "needed_retries": t.needed,
    }


def stats_json(est: FlowEstimate) -> dict[str, Any]:
    """``rota stats --json``: the same facts as the table, with full precision."""
    return {
        "flow": est.flow,
        "runs": est.runs,
        "succeeded": est.succeeded,
        "observed": est.observed,
        "observed_interval": [est.observed_interval.low, est.observed_interval.high],
        "predicted": est.predicted,
        "predicted_without_retries": est.without_retries,
        "target": est.target,
        "reachable": est.needed_success is not None,
        "needed_success": est.needed_success,
        "retry_limit": est.limit,
        "unmeasured": list(est.unmeasured),
        "tasks": [_task_json(t) for t in est.tasks],
    }
