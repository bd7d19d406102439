"""The HTTP API under ``/api``: JSON over the store, and the actions (POST, see the guard)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Final
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from rota.engine import steer
from rota.engine.poolview import liveness_now, pool_json
from rota.errors import NotFound, UserError
from rota.model.states import RunState
from rota.store.browse import RunQuery, cursor_of
from rota.web import views
from rota.web.context import WebContext, web
from rota.web.ids import BadId, check_id
from rota.web.reading import log_refused, pick_attempt, preview, read_log, still_writing

router = APIRouter(prefix="/api")
Ctx = Annotated[WebContext, Depends(web)]
MAX_PAGE: Final = 500
FOLLOW_LIMIT: Final = 300.0


def now() -> datetime:
    return datetime.now(UTC)


def run_id_of(run_id: str) -> str:
    return check_id(run_id, "run id")


def task_id_of(task_id: str) -> str:
    return check_id(task_id, "task id")


def flow_of(flow: str) -> str:
    return check_id(flow, "flow name")


RunId = Annotated[str, Depends(run_id_of)]
TaskId = Annotated[str, Depends(task_id_of)]
Flow = Annotated[str, Depends(flow_of)]


def _date(text: str | None, what: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{what}: not an ISO date or datetime") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def run_query(
    flow: str | None, state: list[str], since: str | None, until: str | None,
    cursor: str | None, limit: int,
) -> RunQuery:  # fmt: skip
    """A checked page query.

    Raises:
        BadId, UserError: a filter is not valid.
    """
    try:
        states = tuple(RunState(s) for s in state if s)
    except ValueError:
        raise UserError(f"state: one of {', '.join(s.value for s in RunState)}") from None
    return RunQuery(
        flow=check_id(flow, "flow name") if flow else None,
        states=states,
        since=_date(since, "since"),
        until=_date(until, "until"),
        after=cursor or None,
        limit=max(1, min(limit, MAX_PAGE)),
    )


@router.get("/flows", summary="Flows: schedule, next run, paused, last runs")
def flows(ctx: Ctx) -> list[dict[str, Any]]:
    from rota.web.flowlist import flow_rows

    return flow_rows(ctx, now())


@router.get("/flows/{flow}", summary="One flow, its latest graph and its recent runs")
def flow_detail(ctx: Ctx, flow: Flow) -> dict[str, Any]:
    from rota.web.flowlist import flow_page

    return flow_page(ctx, flow, now())


@router.get("/flows/{flow}/stats", summary="Reliability: the numbers of `rota stats`")
def flow_stats(
    ctx: Ctx, flow: Flow, last: Annotated[int, Query(ge=1, le=100000)] = 100,
    target: Annotated[float, Query(gt=0.0, le=1.0)] = 0.99,
) -> dict[str, Any]:  # fmt: skip
    from rota.web.flowlist import reliability

    return reliability(ctx, flow, last, target)


@router.get("/runs", summary="Runs, newest first; filters and a cursor for the next page")
def runs(
    ctx: Ctx,
    flow: str | None = None,
    state: Annotated[list[str] | None, Query()] = None,
    since: str | None = None,
    until: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> dict[str, Any]:
    query = run_query(flow, state or [], since, until, cursor, limit)
    page = ctx.store.page_runs(RunQuery(**{**_fields(query), "limit": query.limit + 1}))
    more = len(page) > query.limit
    page = page[: query.limit]
    return {
        "runs": [views.run_json(r) for r in page],
        "next_cursor": cursor_of(page[-1]) if more and page else None,
    }


def _fields(query: RunQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in RunQuery.__dataclass_fields__}


@router.get("/runs/{run_id}", summary="A run, its tasks (mapped instances counted) and attempts")
def run_detail(ctx: Ctx, run_id: RunId) -> dict[str, Any]:
    view = views.run_view(ctx.store, run_id, now())
    return {
        "run": views.run_json(view.run),
        "tasks": [views.task_json(t) for t in view.task_rows()],
        "attempts": [views.attempt_json(a) for a in view.attempts],
        "critical_path": view.critical,
        "driver_exit": ctx.actions.ended.get(run_id),
    }


@router.get("/runs/{run_id}/live", summary="The run's state and its tasks' (for live pages)")
def run_live(ctx: Ctx, run_id: RunId) -> dict[str, Any]:
    from rota.engine.report import summarize

    ctx.actions.reap()
    out = views.live_json(summarize(ctx.store, run_id))
    out["driving"] = run_id in ctx.actions.driving()
    out["driver_exit"] = ctx.actions.ended.get(run_id)
    return out


@router.get("/runs/{run_id}/graph", summary="The run's graph, laid out, and its critical path")
def run_graph(ctx: Ctx, run_id: RunId) -> dict[str, Any]:
    view = views.run_view(ctx.store, run_id, now())
    drawn = view.layout
    return {
        "recorded": view.graph_recorded,
        "tasks": [{"id": tid, "upstream": list(ups)} for tid, ups in view.graph],
        "layout": None
        if drawn is None
        else {
            "width": drawn.width,
            "height": drawn.height,
            "nodes": [{"id": n.id, "layer": n.layer, "x": n.x, "y": n.y} for n in drawn.nodes],
        },
        "critical_path": view.critical,
    }


@router.get("/runs/{run_id}/tasks/{task_id}", summary="A task's attempts, mapped ones included")
def task_detail(ctx: Ctx, run_id: RunId, task_id: TaskId) -> dict[str, Any]:
    ctx.store.get_run(run_id)
    mine = views.instances(ctx.store.attempts(run_id), task_id)
    if not mine:
        raise NotFound(f"run {run_id} has no task {task_id!r}")
    return {"task_id": task_id, "attempts": [views.attempt_json(a) for a in mine]}


@router.get("/runs/{run_id}/tasks/{task_id}/log", summary="An attempt's log: ranged, or followed")
def task_log(
    ctx: Ctx,
    run_id: RunId,
    task_id: TaskId,
    try_number: Annotated[int | None, Query(alias="try", ge=1)] = None,
    index: Annotated[int, Query(ge=-1)] = -1,
    offset: Annotated[int, Query(ge=0)] = 0,
    length: Annotated[int, Query(ge=0, le=1024 * 1024)] = 256 * 1024,
    follow: bool = False,
) -> Response:
    ctx.store.get_run(run_id)
    rec = pick_attempt(ctx.store.attempts(run_id), task_id, try_number, index)
    chunk = read_log(ctx.settings.logs_dir, rec, offset, length)
    if chunk is None and log_refused(ctx.settings.logs_dir, rec):  # a link, or outside
        raise NotFound(f"the log of try {rec.try_number} of {task_id!r} cannot be read")
    if follow:
        return StreamingResponse(_follow(ctx, rec, offset), media_type="text/plain; charset=utf-8")
    data = chunk.data if chunk is not None else b""
    headers = {
        "x-log-offset": str(chunk.offset if chunk else 0),
        "x-log-next-offset": str(chunk.next_offset if chunk else 0),
        "x-log-size": str(chunk.size if chunk else 0),
        "x-log-complete": "0" if still_writing(rec) else "1",
        "x-attempt-state": rec.state.value,
        "x-attempt-try": str(rec.try_number),
    }
    return Response(data, media_type="text/plain; charset=utf-8", headers=headers)


def _follow(ctx: WebContext, rec: Any, offset: int) -> Iterator[bytes]:
    """The log from *offset* as it grows, until the attempt ends (or FOLLOW_LIMIT seconds)."""
    logs = ctx.settings.logs_dir
    deadline = time.monotonic() + FOLLOW_LIMIT
    while True:
        chunk = read_log(logs, rec, offset, 1024 * 1024)
        if chunk is not None and chunk.data:
            offset = chunk.next_offset
            yield chunk.data
            continue
        if not still_writing(rec) or time.monotonic() > deadline:
            return
        time.sleep(0.25)
        rec = pick_attempt(ctx.store.attempts(rec.run_id), rec.task_id, rec.try_number,
                           rec.map_index)  # fmt: skip


@router.get("/runs/{run_id}/tasks/{task_id}/output", summary="A safe preview of a stored output")
def task_output(
    ctx: Ctx,
    run_id: RunId,
    task_id: TaskId,
    try_number: Annotated[int | None, Query(alias="try", ge=1)] = None,
    index: Annotated[int, Query(ge=-1)] = -1,
) -> dict[str, Any]:
    ctx.store.get_run(run_id)
    rec = pick_attempt(ctx.store.attempts(run_id), task_id, try_number, index)
    return preview(ctx.settings.artifacts or str(ctx.settings.home / "artifacts"), rec)


@router.get("/datasets", summary="Datasets: their latest versions")
def datasets(ctx: Ctx) -> list[dict[str, Any]]:
    latest: dict[str, Any] = {}
    for v in ctx.store.dataset_versions():
        latest[v.uri] = v
    return [
        {"uri": v.uri, "versions": v.version, "latest_run": v.run_id, "latest_task": v.task_id,
         "updated": v.created_at.isoformat(), "content_hash": v.content_hash}
        for v in latest.values()
    ]  # fmt: skip


@router.get("/pools", summary="Pools: their slots, those running tasks hold, the tasks waiting")
def pools(ctx: Ctx) -> list[dict[str, Any]]:
    live = liveness_now(ctx.settings.heartbeat_timeout)
    return [pool_json(p) for p in ctx.store.pools(live)]


@router.get("/lineage", summary="Who produced each version of a dataset, and who read it")
def lineage(ctx: Ctx, uri: str) -> dict[str, Any]:
    versions = ctx.store.dataset_versions(uri)
    uses = ctx.store.dataset_uses(uri)
    if not versions and not uses:
        raise NotFound(f"nothing is recorded about dataset {uri}")
    return {
        "uri": uri,
        "producers": [
            {"version": v.version, "run_id": v.run_id, "task_id": v.task_id,
             "content_hash": v.content_hash, "created_at": v.created_at.isoformat()}
            for v in versions
        ],
        "consumers": [
            {"version": u.version, "run_id": u.run_id, "task_id": u.task_id,
             "used_at": u.used_at.isoformat()}
            for u in uses
        ],
    }  # fmt: skip


# --- actions ------------------------------------------------------------------------------------


async def action_input(request: Request) -> dict[str, list[str]]:
    """An action's fields: a JSON object, or a urlencoded form (the guard checked CSRF)."""
    body = await request.body()
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        try:
            value = json.loads(body or b"{}")
        except ValueError:
            raise UserError("the body is not JSON") from None
        if not isinstance(value, dict):
            raise UserError("the body must be a JSON object")
        return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
    try:
        return parse_qs(body.decode("utf-8"), max_num_fields=500)
    except (UnicodeDecodeError, ValueError):
        raise UserError("the form is not valid") from None


Fields = Annotated[dict[str, list[str]], Depends(action_input)]


def _one(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name) or []
    return str(values[0]) if values else None


def _flag(fields: dict[str, list[str]], name: str) -> bool:
    return str(_one(fields, name) or "").lower() in ("1", "true", "on", "yes")


def done(request: Request, fields: dict[str, list[str]], body: dict[str, Any]) -> Response:
    """JSON for API callers; for a page's form, back to the page it names (this server's)."""
    target = _one(fields, "next")
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return RedirectResponse(target, status_code=303)
    return JSONResponse(body)


@router.post("/flows/{flow}/trigger", summary="Trigger a run with parameters (rota trigger)")
def trigger(request: Request, ctx: Ctx, flow: Flow, fields: Fields) -> Response:
    from rota.web.flowlist import flow_target

    params: dict[str, str] = {}
    for key, values in fields.items():
        if key.startswith("param."):
            name = check_id(key.removeprefix("param."), "parameter name")
            params[name] = str(values[0])
    run_id = ctx.actions.trigger(flow_target(ctx, flow), params, _one(fields, "logical_date"))
    return done(request, {"next": [f"/runs/{run_id}"]} if _one(fields, "next") else {},
                {"run_id": run_id})  # fmt: skip


@router.post("/flows/{flow}/pause", summary="Pause a flow's schedule")
def pause(request: Request, ctx: Ctx, flow: Flow, fields: Fields) -> Response:
    changed = steer.set_paused(ctx.store, flow, True, now())
    return done(request, fields, {"flow": flow, "paused": True, "changed": changed})


@router.post("/flows/{flow}/unpause", summary="Unpause a flow's schedule")
def unpause(request: Request, ctx: Ctx, flow: Flow, fields: Fields) -> Response:
    changed = steer.set_paused(ctx.store, flow, False, now())
    return done(request, fields, {"flow": flow, "paused": False, "changed": changed})


@router.post("/runs/{run_id}/cancel", summary="Cancel a run (rota cancel)")
def cancel(request: Request, ctx: Ctx, run_id: RunId, fields: Fields) -> Response:
    outcome = steer.cancel_run(ctx.store, run_id, by="the web UI", now=now())
    return done(request, fields, {"run_id": run_id, "how": outcome.how})


@router.post("/runs/{run_id}/clear", summary="Clear tasks for a resume (rota clear)")
def clear(request: Request, ctx: Ctx, run_id: RunId, fields: Fields) -> Response:
    tasks = [check_id(str(t), "task id") for t in fields.get("task", [])]
    if not tasks:
        raise UserError("name at least one task to clear")
    said = ctx.actions.clear(
        run_id, tasks, downstream=_flag(fields, "downstream"), upstream=_flag(fields, "upstream")
    )
    return done(request, fields, {"run_id": run_id, "message": said})


@router.post("/runs/{run_id}/mark", summary="Mark tasks success or failed by hand (rota mark)")
def mark(request: Request, ctx: Ctx, run_id: RunId, fields: Fields) -> Response:
    tasks = [check_id(str(t), "task id") for t in fields.get("task", [])]
    if not tasks:
        raise UserError("name at least one task to mark")
    state = _one(fields, "state")
    if state not in ("success", "failed"):
        raise UserError("state must be success or failed")
    said = ctx.actions.mark(
        run_id, tasks, state, downstream=_flag(fields, "downstream"),
        upstream=_flag(fields, "upstream"),
    )  # fmt: skip
    return done(request, fields, {"run_id": run_id, "message": said})


@router.post("/runs/{run_id}/resume", summary="Resume a run in a driver process (rota resume)")
def resume(request: Request, ctx: Ctx, run_id: RunId, fields: Fields) -> Response:
    run = ctx.store.get_run(run_id)
    if run.state is RunState.SUCCESS:
        raise UserError(f"run {run_id} succeeded; nothing to resume (clear tasks first)")
    ctx.actions.drive(run_id)
    return done(request, fields, {"run_id": run_id, "driving": True})


__all__ = ["BadId", "router"]
