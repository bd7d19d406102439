"""The ``rota`` subcommands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import click

from rota.cli import render
from rota.cli.main import CliContext, cli, open_store, parse_params
from rota.cli.runarg import complete_flow_names, pick_run, run_argument
from rota.config import EXECUTORS
from rota.errors import UserError
from rota.model.safetext import safe_text

_F = TypeVar("_F", bound=Callable[..., Any])


_EXECUTOR_OPTIONS: Final = (
    click.option(
        "--executor", type=click.Choice(EXECUTORS), help="Where tasks run (default: local)."
    ),
    click.option("--workers", type=click.IntRange(min=1), help="Worker count (default: CPUs)."),
    click.option(
        "--dask-address", metavar="tcp://HOST:PORT",
        help="The Dask scheduler for --executor dask (ROTA_DASK_ADDRESS; none: a LocalCluster).",
    ),
    click.option(
        "--artifacts", metavar="PATH|URL",
        help="Where outputs go (ROTA_ARTIFACTS): a folder every worker shares, or s3://...",
    ),
    click.option(
        "--json", "as_json", is_flag=True, help="End with one JSON line describing the run."
    ),
)  # fmt: skip


def executor_options(command: _F) -> _F:
    """The options of a command that drives a run: --executor, --workers, --dask-address,
    --artifacts and --json."""
    for option in reversed(_EXECUTOR_OPTIONS):
        command = option(command)
    return command


@cli.command("run")
@click.argument("target")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Set a flow parameter."
)
@executor_options
@click.option("--no-cache", is_flag=True, help="Run every task; reuse no cached output.")
@click.option(
    "--logical-date", metavar="DATE",
    help="Run for this logical date of the schedule (ISO; no zone: the flow's). Default: now.",
)  # fmt: skip
@click.pass_obj
def run_cmd(
    ctx: CliContext,
    target: str,
    params: tuple[str, ...],
    executor: str | None,
    workers: int | None,
    dask_address: str | None,
    artifacts: str | None,
    as_json: bool,
    no_cache: bool,
    logical_date: str | None,
) -> None:
    """Run the flow TARGET (PATH[:FLOW]) to the end, in the foreground.

    The run's logical date is the time it starts, and its data interval the last complete one, as
    for a manual run in Airflow. With --logical-date D it is the run the schedule makes for D,
    with D's data interval (Airflow's `dags test DAG D`).

    \b
    Examples:
      rota run flows/churn.py -p n_rows=200
      rota run flows/pipelines.py:churn --executor threads --json
    """
    from rota.cli.timing import read_date
    from rota.engine.loader import resolve_target
    from rota.engine.manual import timing_at
    from rota.engine.session import create_manual_run

    loaded = resolve_target(target)
    dag = loaded.build(parse_params(loaded, params))  # every definition error before any write
    timing = loaded.definition.timing
    when = read_date(logical_date, "--logical-date", timing) if logical_date else None
    if when is not None:
        timing_at(loaded.name, timing, when, "manual")  # a date off the schedule: before any write

    def go(runner: Any) -> Any:
        record = create_manual_run(runner, dag, loaded.ref, timing, logical_date=when)
        if not as_json:
            ctx.err.print(f"run {record.run_id} of flow {loaded.name} started", highlight=False)
        runner.options.faults.hit("run_created")
        return lambda: runner.drive(record.run_id, dag, loaded.ref)

    ctx.placement = {"dask_address": dask_address, "artifacts": artifacts}
    summary = _drive(ctx, executor, workers, as_json, go, use_cache=not no_cache)
    _finish(ctx, summary, dag, as_json)


def _drive(
    ctx: CliContext,
    executor: str | None,
    workers: int | None,
    as_json: bool,
    prepare: Any,
    *,
    use_cache: bool = True,
    slot_group: Any = None,
) -> Any:
    """Open the executor and store, let *prepare* set the run up, then drive it with a display
    (*slot_group*: a scheduler's task-slot limit its runs share)."""
    from rota.engine.session import session

    settings = ctx.settings.with_options(executor=executor, workers=workers, **ctx.placement)
    live = ctx.console.is_terminal and not as_json
    display: Any = render.LiveProgress(ctx.console) if live else None
    plain = None if (live or as_json) else render.PlainProgress(ctx.err)
    hook = display.update if display else (plain.update if plain else None)
    with session(settings, on_progress=hook, use_cache=use_cache, slot_group=slot_group) as runner:
        drive = prepare(runner)
        if not display:
            return drive()
        with display:
            return drive()


def _finish(ctx: CliContext, summary: Any, dag: Any, as_json: bool) -> None:
    ctx.exit_code = summary.exit_code
    if as_json:
        render.print_json(ctx.console, summary.to_json())
        return
    from datetime import UTC, datetime

    from rota.cli.runview import run_header, run_tree

    with open_store(ctx.settings) as store:
        records = store.attempts(summary.run_id)
    now = datetime.now(UTC)
    for text in run_header(summary, now):
        ctx.console.print(text, soft_wrap=True)
    ctx.console.print(run_tree(summary, records, now))
    for line in render.error_lines(summary):
        ctx.err.print(line, style="red", highlight=False, soft_wrap=True)
    note = render.handled_note(summary)
    if note:
        ctx.err.print(note, style="yellow", highlight=False, soft_wrap=True)
    _print_results(ctx, summary, dag)


def _print_results(ctx: CliContext, summary: Any, dag: Any) -> None:
    """Show the outputs of the flow's final tasks (those nothing depends on), secrets masked."""
    import os

    from rota.engine.result import read_output
    from rota.errors import ArtifactError
    from rota.model.secrets import Masker

    masker = Masker.of_params(dag.params)
    masker.add_secrets(dag.params, os.environ)

    sinks = [tid for tid in dag.order if not dag.downstream(tid)]
    if len(sinks) > 5:
        ctx.console.print(f"{len(sinks)} final tasks; their outputs are under the run's artifacts")
        return
    for tid in sinks:
        t = summary.tasks.get(tid)
        if t is None or not t.latest.output_path:
            continue
        rec = t.latest
        try:
            value = read_output(rec, ctx.settings.artifacts)
        except ArtifactError as err:
            ctx.err.print(f"{tid}: {err}")
            continue
        text = masker.redact(repr(value))
        ctx.console.print(f"{tid} → {text[:500]}{'…' if len(text) > 500 else ''}", highlight=False)


@cli.group("runs")
def runs_group() -> None:
    """Inspect runs."""


@runs_group.command("list")
@click.option("--flow", help="Only runs of this flow.", shell_complete=complete_flow_names)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def runs_list(ctx: CliContext, flow: str | None, limit: int | None, as_json: bool) -> None:
    """List runs, newest first, with their whole ids, when they started (UTC) and how long
    they took.

    Any unique prefix of a run id names the run in every command. From 110 columns on, the run's
    type and logical date are shown too. A run whose stored row cannot be read is named on
    stderr, the others are listed, and the exit code is 1.

    \b
    Examples:
      rota runs list --flow churn --limit 20
      rota runs list --json
    """
    from datetime import UTC, datetime

    from rota.cli.runview import runs_table
    from rota.engine.report import run_json
    from rota.errors import CorruptRow

    corrupt: list[CorruptRow] = []
    with open_store(ctx.settings) as store:
        runs = store.list_runs(flow, limit, on_corrupt=corrupt.append)
    if as_json:
        render.print_json(ctx.console, [run_json(r) for r in runs])
    else:
        now = datetime.now(UTC)
        ctx.console.print(runs_table(runs, width=ctx.console.width, now=now))
    for bad in corrupt:
        ctx.err.print(safe_text(f"rota: {bad}"), soft_wrap=True)
    if corrupt:
        ctx.exit_code = 1


@runs_group.command("show")
@run_argument()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--timing", is_flag=True,
    help="Instead of the tree, a table of where each task's time went: queue, dispatch, "
    "execute, hand-off.",
)  # fmt: skip
@click.pass_obj
def runs_show(
    ctx: CliContext, run_id: str | None, last: str | None, as_json: bool, timing: bool
) -> None:
    """Show a run as a tree: its tasks, their attempts and a mapped task's instances.

    RUN_ID may be any unique prefix of a run id; --last [FLOW] is the newest run (of FLOW).
    Each attempt shows its state, start (UTC), duration, the first line of its error and the
    wait before a retry; a mapped task lists the instances that did not succeed, each with its
    own attempts and error (name one as TASK[N] in tasks logs, outputs show and clear).

    \b
    Examples:
      rota runs show 20260101T0300
      rota runs show --last churn
      rota runs show --last --timing
    """
    from datetime import UTC, datetime

    from rota.cli.runview import run_header, run_tree
    from rota.engine.report import summarize

    with open_store(ctx.settings) as store:
        run = pick_run(store, run_id, last)
        summary = summarize(store, run.run_id)
        records = store.attempts(run.run_id)
    if as_json:
        render.print_json(ctx.console, summary.to_json())
        return
    if timing:
        _show_timing(ctx, summary)
        return
    now = datetime.now(UTC)
    for text in run_header(summary, now):
        ctx.console.print(text, soft_wrap=True)
    ctx.console.print(run_tree(summary, records, now))
    _say_outcome(ctx, summary)


def _say_outcome(ctx: CliContext, summary: Any) -> None:
    for text in render.error_lines(summary):
        ctx.console.print(text, style="red", highlight=False, soft_wrap=True)
    note = render.handled_note(summary)
    if note:
        ctx.console.print(note, style="yellow", highlight=False, soft_wrap=True)
    for text in render.reason_lines(summary):
        ctx.console.print(text, style="grey50", highlight=False, soft_wrap=True)


def _show_timing(ctx: CliContext, summary: Any) -> None:
    ctx.console.print(render.summary_table(summary, detail=True))
    ctx.console.print(
        "queue = ready → handed to the executor · dispatch = → a worker began · "
        "execute = → output durable · hand-off = → committed to the store "
        "(a rescheduled sensor: from its first poke to its last)",
        style="grey50",
    )


@cli.group("tasks")
def tasks_group() -> None:
    """Inspect task attempts."""


@cli.group("flows")
def flows_group() -> None:
    """Inspect flow files."""


@flows_group.command("list")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_obj
def flows_list(ctx: CliContext, path: Path, as_json: bool) -> None:
    """List the flows defined under PATH; report each bad file (exit 2 if any).

    \b
    Example:
      rota flows list flows/
    """
    from rota.engine.loader import load_path
    from rota.model.secrets import display_params

    result = load_path(path)
    rows = []
    for name, lf in sorted(result.flows.items()):
        try:
            tasks: int | str = len(lf.build())
        except UserError as err:
            tasks = "?"
            result.errors.append(err)
        params = display_params(
            {
                p.name: (None if p.default is _required() else p.default)
                for p in lf.definition.params
            }
        )
        schedule = lf.definition.timing.describe()
        rows.append(
            {"flow": name, "file": lf.ref.path, "tasks": tasks, "params": params,
             "schedule": schedule}
        )  # fmt: skip
    if as_json:
        render.print_json(ctx.console, {"flows": rows, "errors": [str(e) for e in result.errors]})
    else:
        for row in rows:
            text = f"{row['flow']}  ({row['tasks']} tasks, {row['schedule']})  {row['file']}"
            ctx.console.print(safe_text(text), soft_wrap=True)
        for bad in result.errors:
            ctx.err.print(safe_text(f"rota: error: {bad}"), soft_wrap=True)
    if result.errors:
        ctx.exit_code = 2


def _required() -> object:
    from rota.model.dag import REQUIRED

    return REQUIRED


@cli.command("graph")
@click.argument("target")
@click.option(
    "--format", "fmt", type=click.Choice(["ascii", "mermaid", "dot"]), default="ascii",
    help="ascii for a terminal, mermaid or dot (Graphviz) to draw elsewhere.",
)  # fmt: skip
@click.option(
    "-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
    help="Set a flow parameter (a branch or a map may depend on it).",
)  # fmt: skip
@click.pass_obj
def graph_cmd(ctx: CliContext, target: str, fmt: str, params: tuple[str, ...]) -> None:
    """Print the graph of TARGET (PATH[:FLOW]).

    \b
    Examples:
      rota graph flows/churn.py
      rota graph flows/pipelines.py:churn --format mermaid
    """
    from rota.engine.loader import resolve_target

    loaded = resolve_target(target)
    dag = loaded.build(parse_params(loaded, params))
    click.echo(safe_text(render.graph_text(dag, fmt), multiline=True))
