"""The ``rota`` subcommands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rota.cli import render
from rota.cli.main import CliContext, cli, open_store, parse_params
from rota.config import EXECUTORS
from rota.errors import UserError
from rota.model.safetext import safe_text


@cli.command("run")
@click.argument("target")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Set a flow parameter."
)
@click.option("--executor", type=click.Choice(EXECUTORS), help="Where tasks run (default: local).")
@click.option("--workers", type=click.IntRange(min=1), help="Worker count (default: CPUs).")
@click.option(
    "--dask-address", metavar="tcp://HOST:PORT",
    help="The Dask scheduler for --executor dask (ROTA_DASK_ADDRESS; none: a LocalCluster).",
)  # fmt: skip
@click.option(
    "--artifacts", metavar="PATH|URL",
    help="Where outputs go (ROTA_ARTIFACTS): a folder every worker shares, or s3://...",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line describing the run.")
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
    ctx.console.print(render.summary_table(summary))
    for line in render.error_lines(summary):
        ctx.err.print(line, style="red", highlight=False, soft_wrap=True)
    note = render.handled_note(summary)
    if note:
        ctx.err.print(note, style="yellow", highlight=False, soft_wrap=True)
    _print_results(ctx, summary, dag)


def _print_results(ctx: CliContext, summary: Any, dag: Any) -> None:
    """Show the outputs of the flow's final tasks (those nothing depends on), secrets masked."""
    import os

    from rota.artifacts.store import open_artifact_store
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
            value = open_artifact_store(ctx.settings.artifacts).get(
                str(rec.output_path),
                rec.output_serializer or "pickle",
                producer=tid,
                content_hash=rec.output_hash,
            )
        except ArtifactError as err:
            ctx.err.print(f"{tid}: {err}")
            continue
        text = masker.redact(repr(value))
        ctx.console.print(f"{tid} → {text[:500]}{'…' if len(text) > 500 else ''}", highlight=False)


def _load_run_flow(
    ctx: CliContext, run_id: str | None, last: str | None, raw_params: tuple[str, ...] = ()
) -> tuple[Any, Any, Any]:
    """The run to resume and its flow, loaded from the run's flow file with its parameters
    (a secret one, which the store does not keep, from *raw_params* or the environment)."""
    import os

    from rota.engine.session import build_for_run, flow_of_run, run_to_resume

    with open_store(ctx.settings) as store:
        run = run_to_resume(store, run_id, last)
    loaded = flow_of_run(run)
    dag = build_for_run(run, loaded, parse_params(loaded, raw_params), os.environ)
    return run, loaded, dag


@cli.command("resume")
@click.argument("run_id", required=False)
@click.option("--last", metavar="FLOW", help="Resume the latest unfinished run of FLOW.")
@click.option(
    "-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
    help="A secret parameter's value again (the store does not keep it).",
)  # fmt: skip
@click.option("--executor", type=click.Choice(EXECUTORS), help="Where tasks run (default: local).")
@click.option("--workers", type=click.IntRange(min=1), help="Worker count (default: CPUs).")
@click.option(
    "--dask-address", metavar="tcp://HOST:PORT",
    help="The Dask scheduler for --executor dask (ROTA_DASK_ADDRESS; none: a LocalCluster).",
)  # fmt: skip
@click.option(
    "--artifacts", metavar="PATH|URL",
    help="Where outputs go (ROTA_ARTIFACTS): a folder every worker shares, or s3://...",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="End with one JSON line describing the run.")
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
) -> None:
    """Continue a failed or interrupted run: only what did not succeed runs again.

    A task whose code changed since it succeeded runs again with everything downstream of it.
    A secret parameter given to the run is not stored: give it again with -p, or set
    ROTA_PARAM_<NAME>.
    """
    run, loaded, dag = _load_run_flow(ctx, run_id, last, params)

    def say(plan: Any) -> None:
        out = ctx.err
        out.print(
            f"resuming run {run.run_id} of flow {run.flow}: {len(plan.reasons)} task(s) to run, "
            f"{len(plan.kept)} succeeded task(s) kept",
            highlight=False,
        )
        for tid, why in plan.reasons.items():
            out.print(f"  {tid}: {why}", highlight=False, soft_wrap=True)

    def go(runner: Any) -> Any:
        return lambda: runner.resume(run.run_id, dag, loaded.ref, on_plan=say)

    ctx.placement = {"dask_address": dask_address, "artifacts": artifacts}
    summary = _drive(ctx, executor, workers, as_json, go)
    _finish(ctx, summary, dag, as_json)


@cli.command("clear")
@click.argument("run_id")
@click.option("--task", "tasks", multiple=True, required=True, metavar="ID", help="Task to reset.")
@click.option("--downstream", is_flag=True, help="Also every task downstream of those.")
@click.option("--upstream", is_flag=True, help="Also every task upstream of those.")
@click.pass_obj
def clear_cmd(
    ctx: CliContext, run_id: str, tasks: tuple[str, ...], downstream: bool, upstream: bool
) -> None:
    """Reset tasks of RUN_ID so that `rota resume RUN_ID` runs them again."""
    from rota.engine.runner import clear_tasks
    from rota.model.schedule import SystemClock

    run, _loaded, dag = _load_run_flow(ctx, run_id, None)
    with open_store(ctx.settings) as store:
        cleared = clear_tasks(
            store,
            run.run_id,
            dag,
            tasks,
            now=SystemClock().now(),
            downstream=downstream,
            upstream=upstream,
        )
    ctx.console.print(
        f"cleared {len(cleared)} task(s) of run {run.run_id}: {', '.join(cleared)}; "
        f"run `rota resume {run.run_id}` to run them",
        highlight=False,
        soft_wrap=True,
    )


@cli.group("runs")
def runs_group() -> None:
    """Inspect runs."""


@runs_group.command("list")
@click.option("--flow", help="Only runs of this flow.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def runs_list(ctx: CliContext, flow: str | None, limit: int | None, as_json: bool) -> None:
    """List runs, newest first.

    A run whose stored row cannot be read is named on stderr, the others are listed, and the
    exit code is 1.
    """
    from rota.engine.report import run_json
    from rota.errors import CorruptRow

    corrupt: list[CorruptRow] = []
    with open_store(ctx.settings) as store:
        runs = store.list_runs(flow, limit, on_corrupt=corrupt.append)
    if as_json:
        render.print_json(ctx.console, [run_json(r) for r in runs])
    else:
        ctx.console.print(render.runs_table(runs))
    for bad in corrupt:
        ctx.err.print(safe_text(f"rota: {bad}"), soft_wrap=True)
    if corrupt:
        ctx.exit_code = 1


@runs_group.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def runs_show(ctx: CliContext, run_id: str, as_json: bool) -> None:
    """Show RUN_ID: each task's state, attempts, and where its time went."""
    from rota.engine.report import summarize

    with open_store(ctx.settings) as store:
        summary = summarize(store, run_id)
    if as_json:
        render.print_json(ctx.console, summary.to_json())
        return
    ctx.console.print(render.summary_table(summary, detail=True))
    for line in render.error_lines(summary):
        ctx.console.print(line, style="red", highlight=False, soft_wrap=True)
    note = render.handled_note(summary)
    if note:
        ctx.console.print(note, style="yellow", highlight=False, soft_wrap=True)
    for line in render.reason_lines(summary):
        ctx.console.print(line, style="grey50", highlight=False, soft_wrap=True)
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
    """List the flows defined under PATH; report each bad file (exit 2 if any)."""
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
@click.option("--format", "fmt", type=click.Choice(["ascii", "mermaid", "dot"]), default="ascii")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE")
@click.pass_obj
def graph_cmd(ctx: CliContext, target: str, fmt: str, params: tuple[str, ...]) -> None:
    """Print the graph of TARGET (PATH[:FLOW])."""
    from rota.engine.loader import resolve_target

    loaded = resolve_target(target)
    dag = loaded.build(parse_params(loaded, params))
    click.echo(safe_text(render.graph_text(dag, fmt), multiline=True))
