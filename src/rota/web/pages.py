"""The pages: server-rendered (Jinja2, autoescaped), with a little JavaScript served as files."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from rota.errors import ArtifactError, NotFound, UserError
from rota.web import views
from rota.web.api import Flow, RunId, TaskId, run_query
from rota.web.context import WebContext, web
from rota.web.flowlist import flow_page, flow_rows, reliability
from rota.web.reading import pick_attempt, preview

router = APIRouter(include_in_schema=False)
Ctx = Annotated[WebContext, Depends(web)]


def _page(ctx: WebContext, name: str, **values: Any) -> HTMLResponse:
    html = ctx.env.get_template(name).render(csrf=ctx.csrf, **values)
    return HTMLResponse(html)


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/login")
def login_page(request: Request) -> Response:
    return RedirectResponse("/", status_code=303)  # the guard answers 401 with the form


@router.post("/login")
def login(ctx: Ctx) -> Response:
    from rota.web.guard import cookie_name

    out = RedirectResponse("/", status_code=303)
    out.set_cookie(cookie_name(ctx), ctx.session, httponly=True, samesite="strict", path="/")
    return out


@router.post("/logout")
def logout(ctx: Ctx) -> Response:
    from rota.web.guard import cookie_name

    out = RedirectResponse("/login", status_code=303)
    out.delete_cookie(cookie_name(ctx), path="/", httponly=True, samesite="strict")
    return out


@router.get("/metrics")
def metrics(ctx: Ctx) -> PlainTextResponse:
    from rota.web.metrics import BUCKETS, render

    text = render(ctx.store.counts(BUCKETS), datetime.now(UTC))
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/api/docs")
def api_docs(request: Request, ctx: Ctx) -> HTMLResponse:
    spec = request.app.openapi()
    operations = [
        {"method": method.upper(), "path": path, "summary": op.get("summary", ""),
         "params": [p["name"] for p in op.get("parameters", [])]}
        for path, item in spec.get("paths", {}).items()
        for method, op in item.items()
    ]  # fmt: skip
    return _page(ctx, "docs.html", operations=operations, version=spec.get("openapi", ""))


@router.get("/")
def flows_page(ctx: Ctx) -> HTMLResponse:
    return _page(ctx, "flows.html", flows=flow_rows(ctx, datetime.now(UTC)),
                 scanned=ctx.flows_dir is not None)  # fmt: skip


@router.get("/flows/{flow}")
def flow_view(ctx: Ctx, flow: Flow) -> HTMLResponse:
    from rota.web.layout import layout

    data = flow_page(ctx, flow, datetime.now(UTC))
    graph = [(t["id"], tuple(t["upstream"])) for t in data["graph"]]
    drawn = layout(graph) if 0 < len(graph) <= views.GRAPH_MAX else None
    return _page(ctx, "flow.html", f=data, layout=drawn, states={})


@router.get("/flows/{flow}/reliability")
def reliability_page(
    ctx: Ctx, flow: Flow, last: Annotated[int, Query(ge=1, le=100000)] = 100,
    target: Annotated[float, Query(gt=0.0, le=1.0)] = 0.99,
) -> HTMLResponse:  # fmt: skip
    try:
        stats: dict[str, Any] | None = reliability(ctx, flow, last, target)
        problem = ""
    except (UserError, NotFound) as err:
        stats, problem = None, str(err)
    return _page(ctx, "reliability.html", flow=flow, stats=stats, problem=problem, last=last,
                 target=target)  # fmt: skip


@router.get("/runs")
def runs_page(
    ctx: Ctx,
    flow: str | None = None,
    state: str | None = None,
    since: str | None = None,
    until: str | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    from rota.store.browse import RunQuery, cursor_of

    query = run_query(flow, [state] if state else [], since, until, cursor, 50)
    fields = {name: getattr(query, name) for name in RunQuery.__dataclass_fields__}
    page = ctx.store.page_runs(RunQuery(**{**fields, "limit": 51}), on_corrupt=lambda _b: None)
    more = len(page) > 50
    page = page[:50]
    filters = {"flow": flow or "", "state": state or "", "since": since or "", "until": until or ""}
    nxt = cursor_of(page[-1]) if more and page else None
    return _page(ctx, "runs.html", runs=[views.run_json(r) for r in page], filters=filters,
                 next_cursor=nxt)  # fmt: skip


@router.get("/runs/{run_id}")
def run_page(ctx: Ctx, run_id: RunId) -> HTMLResponse:
    ctx.actions.reap()
    view = views.run_view(ctx.store, run_id, datetime.now(UTC))
    states = {tid: t.state.value for tid, t in view.summary.tasks.items()}
    return _page(ctx, "run.html", v=view, states=states, layout=view.layout,
                 driver_exit=ctx.actions.ended.get(run_id),
                 driving=run_id in ctx.actions.driving())  # fmt: skip


@router.get("/runs/{run_id}/tasks/{task_id}")
def task_page(ctx: Ctx, run_id: RunId, task_id: TaskId) -> HTMLResponse:
    run = ctx.store.get_run(run_id)
    attempts = views.instances(ctx.store.attempts(run_id), task_id)
    if not attempts:
        raise NotFound(f"run {run_id} has no task {task_id!r}")
    latest = (
        pick_attempt(attempts, task_id, None, -1)
        if any(a.map_index < 0 for a in attempts)
        else attempts[-1]
    )
    shown: dict[str, Any] | None = None
    problem = ""
    if latest.output_path:
        try:
            shown = preview(ctx.settings.artifacts or str(ctx.settings.home / "artifacts"), latest)
        except (ArtifactError, NotFound) as err:
            problem = str(err)
    return _page(ctx, "task.html", run=views.run_json(run), task_id=task_id, attempts=attempts,
                 latest=latest, output=shown, output_problem=problem)  # fmt: skip


@router.get("/runs/{run_id}/tasks/{task_id}/log")
def log_page(
    ctx: Ctx,
    run_id: RunId,
    task_id: TaskId,
    try_number: Annotated[int | None, Query(alias="try", ge=1)] = None,
    index: Annotated[int, Query(ge=-1)] = -1,
) -> HTMLResponse:
    ctx.store.get_run(run_id)
    rec = pick_attempt(ctx.store.attempts(run_id), task_id, try_number, index)
    return _page(ctx, "log.html", run_id=run_id, task_id=task_id, rec=rec)


@router.get("/datasets")
def datasets_page(ctx: Ctx, uri: str | None = None) -> HTMLResponse:
    from rota.web.api import datasets, lineage

    found: dict[str, Any] | None = None
    if uri:
        try:
            found = lineage(ctx, uri)
        except NotFound:
            found = {"uri": uri, "producers": [], "consumers": []}
    return _page(ctx, "datasets.html", datasets=datasets(ctx), lineage=found)


@router.get("/pools")
def pools_page(ctx: Ctx) -> HTMLResponse:
    from rota.web.api import pools

    return _page(ctx, "pools.html", pools=pools(ctx))
