"""The FastAPI application: routers, static files, error pages, the guard and its policy."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount

from rota.errors import ArtifactError, NotFound, RotaError, UserError
from rota.model.safetext import safe_text
from rota.web import api, pages, policy
from rota.web.actions import ActionFailed
from rota.web.context import WebContext
from rota.web.guard import Guard
from rota.web.ids import BadId


def _error(request: Request, status: int, message: str) -> Response:
    """A one-line error: JSON for the API, a small page for a browser."""
    text = safe_text(message)
    if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"detail": text}, status_code=status)
    ctx: WebContext = request.app.state.web
    page = ctx.env.get_template("error.html").render(status=status, message=text, csrf=ctx.csrf)
    return HTMLResponse(page, status_code=status)


def _status(err: Exception) -> int:
    from rota.engine.lease import RunBusy

    if isinstance(err, (BadId, ValueError)):
        return 400
    if isinstance(err, NotFound):
        return 404
    if isinstance(err, RunBusy):
        return 409
    if isinstance(err, UserError):
        return 400
    if isinstance(err, (ActionFailed, ArtifactError)):
        return 502
    return 500


def create_app(ctx: WebContext) -> FastAPI:
    """The app for *ctx*.

    Raises:
        MissingPolicy: a route has no entry in the policy table.
    """
    app = FastAPI(
        title="Rota",
        summary="Flows, runs, tasks and logs of one Rota home; actions as POSTs.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.web = ctx
    # the routers' routes go in as they are: one flat table that the guard and policy read
    app.router.routes.extend([*api.router.routes, *pages.router.routes])
    app.router.routes.append(Mount("/static", StaticFiles(packages=[("rota.web", "static")])))

    async def on_error(request: Request, err: Exception) -> Response:
        return _error(request, _status(err), str(err))

    async def on_invalid(request: Request, err: Exception) -> Response:
        errors = err.errors() if isinstance(err, RequestValidationError) else []
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in errors[:3])
        return _error(request, 400, f"invalid request: {where or 'parameters'}")

    for kind in (BadId, RotaError):
        app.add_exception_handler(kind, on_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_middleware(Guard)
    policy.check([str(getattr(r, "path", "")) for r in app.router.routes])
    return app
