"""``rota outputs`` and ``rota cache``: what a task stored, and why its cache key hit or missed."""

from __future__ import annotations

from typing import Any

import click

from rota.cli import render
from rota.cli.address import TaskAddress, attempts_of, parse_task
from rota.cli.main import CliContext, cli, open_store
from rota.cli.runarg import pick_run, run_argument, task_after
from rota.errors import NotFound, UserError
from rota.store.base import AttemptRecord, DatasetUse, DatasetVersion, Store


def _latest(store: Store, run_id: str, address: TaskAddress) -> AttemptRecord:
    """The latest attempt of the task or instance *address* in run *run_id*.

    Raises:
        NotFound: no such task or instance.
        UserError: *address* names a mapped task as a whole (its instances have the outputs).
    """
    return attempts_of(store.attempts(run_id), run_id, address, instance=True)[-1]


@cli.group("outputs")
def outputs_group() -> None:
    """Inspect stored task outputs."""


_UNSAFE_HELP = (
    "Unpickle a pickle or joblib output to preview its value, importing the run's flow file "
    "first when the output's classes are defined there. Unsafe: unpickling runs whatever code the "
    "file names, so a tampered output (or store row) runs code as you. Only for outputs you trust."
)


@outputs_group.command("show")
@run_argument(task=True)
@click.option("--unsafe-load", is_flag=True, help=_UNSAFE_HELP)
@click.pass_obj
def outputs_show(
    ctx: CliContext, run_id: str | None, task_id: str | None, last: str | None, unsafe_load: bool
) -> None:
    """Preview what TASK_ID of RUN_ID returned, and where it is stored.

    RUN_ID may be any unique prefix, or --last [FLOW] the newest run; TASK_ID[N] (or TASK_ID@N)
    is instance N of a mapped task. JSON, npy and Parquet outputs are previewed; a pickle or
    joblib output is never loaded unless --unsafe-load is given: its type, the globals it would
    import, its size and hash are shown, read from its bytes without running them.

    \b
    Examples:
      rota outputs show 20260101T0300 evaluate
      rota outputs show --last churn 'fit[3]'
    """
    from rota.artifacts.preview import preview
    from rota.artifacts.store import open_artifact_store

    run_id, task, last = task_after(run_id, task_id, last)
    address = parse_task(task)
    with open_store(ctx.settings) as store:
        run = pick_run(store, run_id, last)
        rec = _latest(store, run.run_id, address)
        flow_path = run.flow_path
    if not rec.output_path:
        ctx.console.print(f"{address} stored no output (state {rec.state.value})", markup=False)
        return
    serializer = rec.output_serializer or "pickle"
    artifacts = open_artifact_store(ctx.settings.artifacts)
    uri, digest = rec.output_path, rec.output_hash
    inline = rec.output_inline
    described = artifacts.peek(
        uri, serializer, producer=str(address), content_hash=digest, inline=inline
    )
    _say(ctx, f"{address}: {serializer}, {rec.output_size} bytes, blake2b {rec.output_hash}")
    _say(ctx, rec.output_path)
    if not (described.pickled and unsafe_load):
        _say(ctx, described.text)
        if described.pickled:
            _say(
                ctx, "not loaded: loading a pickle runs the code it names (--unsafe-load loads it)"
            )
        return
    _import_flow_if_named(flow_path, described.imports)
    value = artifacts.get(
        uri, serializer, producer=str(address), content_hash=digest, inline=inline
    )
    _say(ctx, preview(value))


def _say(ctx: CliContext, text: str) -> None:
    """Print *text* as plain text: it comes from the store and the output, so it is data."""
    from rota.artifacts.preview import printable

    ctx.console.print(printable(text), markup=False, highlight=False, soft_wrap=True)


def _import_flow_if_named(flow_path: str, imports: tuple[str, ...]) -> None:
    """Import the run's flow file when the pickle names its module, so its classes resolve."""
    from pathlib import Path

    from rota.engine.loader import load_file
    from rota.flowfile import module_name_for

    if not flow_path:
        return
    module = module_name_for(Path(flow_path))
    if not any(name.partition(".")[0] == module for name in imports):
        return
    if not Path(flow_path).is_file():
        raise UserError(f"the output's classes are defined in flow file {flow_path}, now gone")
    load_file(Path(flow_path))


@cli.group("cache")
def cache_group() -> None:
    """Inspect and clear the task cache."""


@cache_group.command("explain")
@run_argument(task=True)
@click.pass_obj
def cache_explain(
    ctx: CliContext, run_id: str | None, task_id: str | None, last: str | None
) -> None:
    """Show the parts of TASK_ID's cache key in RUN_ID and, for a miss, which part changed.

    RUN_ID may be any unique prefix, or --last [FLOW] the newest run; TASK_ID[N] (or
    TASK_ID@N) is instance N of a mapped task.

    \b
    Examples:
      rota cache explain 20260101T0300 features
      rota cache explain --last churn features
    """
    run_id, task, last = task_after(run_id, task_id, last)
    address = parse_task(task)
    with open_store(ctx.settings) as store:
        run = pick_run(store, run_id, last)
        rec = _latest(store, run.run_id, address)
        history = store.cache_history(run.flow, address.task_id)
    if rec.cache_parts is None:
        ctx.console.print(f"{address} recorded no cache key in run {run.run_id} (cache is off)")
        return
    out = [*render.cache_parts_lines(rec), _cache_verdict(rec, history)]
    for line in out:
        ctx.console.print(line, highlight=False, soft_wrap=True)


def _cache_verdict(rec: AttemptRecord, history: list[AttemptRecord]) -> str:
    """Hit or miss, and for a miss what differs from the last earlier key of the task."""
    from rota.engine.cachekey import explain_difference

    parts = rec.cache_parts or {}
    if rec.cached_from is not None:
        return f"hit: reused the output of attempt {rec.cached_from}"
    if parts.get("unkeyed"):
        return f"miss: no key could be computed, so the task ran: {parts['unkeyed']}"
    if parts.get("bypassed"):
        return "miss: the run was started with --no-cache"
    earlier = [h for h in history if h.id < rec.id and h.cache_parts is not None]
    if not earlier:
        return "miss: no earlier attempt of this task recorded a key"
    before = earlier[0]
    changes = explain_difference(parts, before.cache_parts or {})
    why = "; ".join(changes) or "same parts, but that entry was cleared or had expired"
    hint = ""
    if changes and all(c.startswith("run fact ") for c in changes) and "cache_on" not in parts:
        hint = " (if the task does not read these, declare what it reads with cache_on=)"
    return f"miss: compared with run {before.run_id}: {why}{hint}"


@cache_group.command("clear")
@click.option("--flow", help="Only entries of this flow.")
@click.option("--task", "task_id", help="Only entries of this task.")
@click.pass_obj
def cache_clear(ctx: CliContext, flow: str | None, task_id: str | None) -> None:
    """Forget cached outputs, so that the next runs execute the tasks again.

    \b
    Example:
      rota cache clear --flow churn --task features
    """
    with open_store(ctx.settings) as store:
        dropped = store.clear_cache(flow, task_id)
    ctx.console.print(f"cleared {dropped} cache entr{'y' if dropped == 1 else 'ies'}")


@cli.group("datasets")
def datasets_group() -> None:
    """Inspect datasets: versions produced by tasks, and flows scheduled on them."""


@datasets_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def datasets_list(ctx: CliContext, as_json: bool) -> None:
    """Every dataset with versions: its latest version and who produced it.

    \b
    Example:
      rota datasets list --json
    """
    with open_store(ctx.settings) as store:
        versions = store.dataset_versions()
    latest: dict[str, Any] = {}
    for v in versions:
        latest[v.uri] = v
    rows = [
        {"uri": v.uri, "versions": v.version, "latest_run": v.run_id, "latest_task": v.task_id,
         "updated": v.created_at.isoformat(), "content_hash": v.content_hash}
        for v in latest.values()
    ]  # fmt: skip
    if as_json:
        render.print_json(ctx.console, rows)
        return
    for r in rows:
        ctx.console.print(
            f"{r['uri']}  v{r['versions']}  by {r['latest_task']} in run {r['latest_run']}"
            f"  {r['updated']}",
            highlight=False,
            soft_wrap=True,
        )


@datasets_group.command("show")
@click.argument("uri")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_obj
def datasets_show(ctx: CliContext, uri: str, as_json: bool) -> None:
    """Every version of URI: when, its content hash, and the run and task that produced it.

    \b
    Example:
      rota datasets show s3://bucket/features.parquet
    """
    with open_store(ctx.settings) as store:
        versions = store.dataset_versions(uri)
    if not versions:
        raise NotFound(f"no version of dataset {uri} is recorded")
    if as_json:
        render.print_json(ctx.console, [_version_json(v) for v in versions])
        return
    for v in versions:
        ctx.console.print(
            f"v{v.version}  {v.created_at.isoformat()}  {v.content_hash or '-'}  "
            f"run {v.run_id} task {v.task_id}",
            highlight=False,
            soft_wrap=True,
        )


def _version_json(v: DatasetVersion) -> dict[str, Any]:
    return {
        "uri": v.uri, "version": v.version, "content_hash": v.content_hash,
        "run_id": v.run_id, "task_id": v.task_id, "created_at": v.created_at.isoformat(),
    }  # fmt: skip


def _use_json(u: DatasetUse) -> dict[str, Any]:
    return {
        "run_id": u.run_id, "task_id": u.task_id, "version": u.version,
        "used_at": u.used_at.isoformat(),
    }  # fmt: skip


@cli.command("lineage")
@click.argument("uri")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_obj
def lineage_cmd(ctx: CliContext, uri: str, as_json: bool) -> None:
    """Which run and task produced each version of URI, and which runs read it.

    \b
    Example:
      rota lineage s3://bucket/features.parquet --json
    """
    with open_store(ctx.settings) as store:
        versions = store.dataset_versions(uri)
        uses = store.dataset_uses(uri)
    if not versions and not uses:
        raise NotFound(f"nothing is recorded about dataset {uri}")
    if as_json:
        producers = [_version_json(v) for v in versions]
        consumers = [_use_json(u) for u in uses]
        render.print_json(ctx.console, {"uri": uri, "producers": producers, "consumers": consumers})
        return
    ctx.console.print(f"dataset {uri}", highlight=False)
    for v in versions:
        readers = [f"{u.task_id} (run {u.run_id})" for u in uses if u.version == v.version]
        ctx.console.print(
            f"  v{v.version} produced by {v.task_id} in run {v.run_id}"
            + (f"; read by {', '.join(readers)}" if readers else "; not read yet"),
            highlight=False,
            soft_wrap=True,
        )
    unversioned = [u for u in uses if u.version is None]
    for u in unversioned:
        ctx.console.print(
            f"  read before any version: {u.task_id} (run {u.run_id})", highlight=False
        )


@datasets_group.command("due")
@click.argument("target")
@click.pass_obj
def datasets_due(ctx: CliContext, target: str) -> None:
    """Whether the flow TARGET (PATH[:FLOW]), scheduled on datasets, is due to run.

    \b
    Example:
      rota datasets due flows/report.py
    """
    from rota.engine.datasets import waiting_on
    from rota.engine.loader import resolve_target

    loaded = resolve_target(target)
    required = loaded.definition.schedule
    if not required:
        raise UserError(f"flow {loaded.name!r} is not scheduled on datasets")
    with open_store(ctx.settings) as store:
        missing = waiting_on(store, loaded.name, required)
    if not missing:
        ctx.console.print(f"flow {loaded.name} is due: every dataset has a new version")
    else:
        ctx.console.print(f"flow {loaded.name} is not due: waiting for {', '.join(missing)}")
        ctx.exit_code = 1
