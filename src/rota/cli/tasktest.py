"""``rota tasks test``: run one task alone, here, recording nothing (Airflow's ``tasks test``)."""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from typing import Any

import click

from rota.cli.commands import tasks_group
from rota.cli.main import CliContext, open_store, parse_params
from rota.cli.runarg import complete_run_ids
from rota.errors import Skip, UserError
from rota.model.safetext import safe_text

_SHOWN = 2000  # characters of the output's repr printed


@tasks_group.command("test")
@click.argument("target")
@click.argument("task")
@click.option(
    "--run", "run_id", metavar="RUN_ID", shell_complete=complete_run_ids,
    help="Take the task's inputs (its upstreams' stored outputs), parameters and dates from "
    "this run (its whole id or a unique prefix).",
)  # fmt: skip
@click.option(
    "--logical-date", metavar="DATE",
    help="Run as of this logical date (ISO; no zone: the flow's); the flow's run for it, if "
    "there is one, gives the inputs.",
)  # fmt: skip
@click.option(
    "-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
    help="Set a flow parameter (over the run's).",
)  # fmt: skip
@click.pass_obj
def tasks_test(
    ctx: CliContext,
    target: str,
    task: str,
    run_id: str | None,
    logical_date: str | None,
    params: tuple[str, ...],
) -> None:
    """Run TASK of TARGET (PATH[:FLOW]) alone, in this process, recording nothing.

    No run, attempt, output, log or checkpoint is written: the task prints here, and what it
    returns is shown (secrets masked). TASK[N] is instance N of a mapped task. With --run (or
    --logical-date of a run) the task gets that run's stored upstream outputs, parameters and
    dates; exit 0 when it succeeds (or skips itself), 1 when it raises.

    Example: rota tasks test flows/ml.py:churn train --run 20260301T030000-ab12cd34ef
    """
    from rota.engine.loader import resolve_target
    from rota.engine.single import parse_task

    if run_id is not None and logical_date is not None:
        raise UserError("give --run or --logical-date, not both")
    loaded = resolve_target(target)
    name, index = parse_task(task)
    scratch = tempfile.mkdtemp(prefix="rota-tasks-test-")  # the checkpoint; removed after
    try:
        prepared = _prepare(ctx, loaded, name, index, run_id, logical_date, params, scratch)
        _run(ctx, prepared, task)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _prepare(
    ctx: CliContext,
    loaded: Any,
    name: str,
    index: int | None,
    run_id: str | None,
    logical_date: str | None,
    params: tuple[str, ...],
    scratch: str,
) -> Any:
    """The task ready to run: its flow built, its inputs read, its made-up context."""
    from rota.engine.single import alone, stored_inputs, task_spec

    given = parse_params(loaded, params)
    run = _source_run(ctx, loaded, run_id, logical_date)
    if run is not None:
        from rota.engine.session import build_for_run

        dag = build_for_run(run, loaded, given, os.environ, override=True)
    else:
        dag = loaded.build(given)
    spec = task_spec(dag, name, index)
    if run is None and spec.data_inputs:
        ups = ", ".join(map(repr, spec.data_inputs))
        raise UserError(
            f"task {name!r} reads the output of {ups}: give --run RUN_ID (or the --logical-date "
            "of a run) to take it from"
        )
    inputs: dict[str, Any] = {}
    if run is not None:
        with open_store(ctx.settings) as store:
            inputs = stored_inputs(store, run.run_id, dag, name, ctx.settings.artifacts)
    facts = _facts(loaded, run, logical_date, scratch)
    where = f"run {run.run_id}" if run is not None else "no run"
    ctx.err.print(
        f"testing task {safe_text(name if index is None else f'{name}[{index}]')} of flow "
        f"{loaded.name} ({where}, logical date {facts.logical_date.isoformat()}); "
        "nothing is recorded",
        highlight=False,
        soft_wrap=True,
    )
    return alone(dag, name, index, inputs, facts)


def _source_run(ctx: CliContext, loaded: Any, run_id: str | None, logical_date: str | None) -> Any:
    """The run whose outputs and facts the test takes: --run, or the flow's run for
    --logical-date if the store has one (a store that does not exist yet is not created)."""
    from rota.cli.timing import read_date
    from rota.store.connect import sqlite_file

    if run_id is not None:
        from rota.engine.runref import find_run

        with open_store(ctx.settings) as store:
            return find_run(store, run_id)  # the whole id or a unique prefix
    if logical_date is None:
        return None
    when = read_date(logical_date, "--logical-date", loaded.definition.timing)
    db = sqlite_file(ctx.settings.database_url)
    if db is not None and not db.exists():
        return None
    with open_store(ctx.settings) as store:
        held = store.runs_for_dates(loaded.name, when, when)
    return held[0] if held else None


def _facts(loaded: Any, run: Any, logical_date: str | None, scratch: str) -> Any:
    """The made-up context's facts: the run's, or those of a run for --logical-date (or now)."""
    from datetime import UTC, datetime

    from rota.cli.timing import read_date
    from rota.engine.manual import timing_at, timing_now
    from rota.engine.single import Facts

    if run is not None:
        return Facts.of_run(run, scratch)
    timing = loaded.definition.timing
    if logical_date is None:
        return Facts.of_timing("test", timing_now(timing, datetime.now(UTC), "manual"), scratch)
    when = read_date(logical_date, "--logical-date", timing)
    return Facts.of_timing("test", timing_at(loaded.name, timing, when, "manual"), scratch)


def _run(ctx: CliContext, prepared: Any, task: str) -> None:
    """Call the task; show what it returned, or its error (exit 1)."""
    redact = prepared.masker.redact
    try:
        result = prepared.call()
    except Skip as sig:
        ctx.console.print(f"{safe_text(task)} skipped itself: {safe_text(redact(str(sig)))}")
        return
    except Exception as err:
        text = redact("".join(traceback.format_exception(err)))
        ctx.err.print(safe_text(text, multiline=True), highlight=False, soft_wrap=True)
        ctx.err.print(
            f"{safe_text(task)} failed: {type(err).__name__}: {safe_text(redact(str(err)))}",
            style="red",
            highlight=False,
            soft_wrap=True,
        )
        ctx.exit_code = 1
        return
    text = redact(repr(result.value))
    cut = f"… ({len(text)} characters)" if len(text) > _SHOWN else ""
    ctx.console.print(f"{safe_text(task)} → {safe_text(text[:_SHOWN])}{cut}", highlight=False)
    if result.choice is not None and result.choice.follow:
        ctx.console.print(f"follows: {', '.join(result.choice.follow)}", highlight=False)
