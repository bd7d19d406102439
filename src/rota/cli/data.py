"""``rota outputs`` and ``rota cache``: what a task stored, and why its cache key hit or missed."""

from __future__ import annotations

from pathlib import Path

import click

from rota.cli import render
from rota.cli.main import CliContext, cli, open_store
from rota.errors import NotFound
from rota.store.base import AttemptRecord, Store


def _latest(store: Store, run_id: str, task_id: str) -> AttemptRecord:
    store.get_run(run_id)
    recs = [a for a in store.attempts(run_id) if a.task_id == task_id and a.map_index < 0]
    if not recs:
        raise NotFound(f"run {run_id} has no task {task_id!r}")
    return max(recs, key=lambda a: a.try_number)


@cli.group("outputs")
def outputs_group() -> None:
    """Inspect stored task outputs."""


@outputs_group.command("show")
@click.argument("run_id")
@click.argument("task_id")
@click.pass_obj
def outputs_show(ctx: CliContext, run_id: str, task_id: str) -> None:
    """Preview what TASK_ID of RUN_ID returned, and where it is stored."""
    from rota.artifacts.local import read_output
    from rota.artifacts.preview import preview

    with open_store(ctx.settings) as store:
        rec = _latest(store, run_id, task_id)
    if not rec.output_path:
        ctx.console.print(f"{task_id} stored no output (state {rec.state.value})")
        return
    value = read_output(Path(rec.output_path), producer=task_id)
    ctx.console.print(
        f"{task_id}: {rec.output_serializer or 'pickle'}, {rec.output_size} bytes, "
        f"blake2b {rec.output_hash}\n{rec.output_path}",
        highlight=False,
        soft_wrap=True,
    )
    ctx.console.print(preview(value), highlight=False, soft_wrap=True)


@cli.group("cache")
def cache_group() -> None:
    """Inspect and clear the task cache."""


@cache_group.command("explain")
@click.argument("run_id")
@click.argument("task_id")
@click.pass_obj
def cache_explain(ctx: CliContext, run_id: str, task_id: str) -> None:
    """Show the parts of TASK_ID's cache key in RUN_ID and, for a miss, which part changed."""
    from rota.engine.cache import explain_difference

    with open_store(ctx.settings) as store:
        rec = _latest(store, run_id, task_id)
        run = store.get_run(run_id)
        history = store.cache_history(run.flow, task_id)
    if rec.cache_parts is None:
        ctx.console.print(f"{task_id} recorded no cache key in run {run_id} (cache is off)")
        return
    out = render.cache_parts_lines(rec)
    if rec.cached_from is not None:
        out.append(f"hit: reused the output of attempt {rec.cached_from}")
    elif rec.cache_parts.get("bypassed"):
        out.append("miss: the run was started with --no-cache")
    else:
        earlier = [h for h in history if h.id < rec.id and h.cache_parts is not None]
        if not earlier:
            out.append("miss: no earlier attempt of this task recorded a key")
        else:
            before = earlier[0]
            changes = explain_difference(rec.cache_parts, before.cache_parts or {})
            why = "; ".join(changes) or "same parts, but that entry was cleared or had expired"
            out.append(f"miss: compared with run {before.run_id}: {why}")
    for line in out:
        ctx.console.print(line, highlight=False, soft_wrap=True)


@cache_group.command("clear")
@click.option("--flow", help="Only entries of this flow.")
@click.option("--task", "task_id", help="Only entries of this task.")
@click.pass_obj
def cache_clear(ctx: CliContext, flow: str | None, task_id: str | None) -> None:
    """Forget cached outputs, so that the next runs execute the tasks again."""
    with open_store(ctx.settings) as store:
        dropped = store.clear_cache(flow, task_id)
    ctx.console.print(f"cleared {dropped} cache entr{'y' if dropped == 1 else 'ies'}")
