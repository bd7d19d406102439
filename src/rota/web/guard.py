"""The auth middleware: every request but ``/health`` needs the token; unsafe ones need more.

A request is let through when it carries ``Authorization: Bearer TOKEN`` or the session cookie
the login form sets (HttpOnly, SameSite=Strict, named after the token so that two servers on one
host keep separate sessions). A POST, PUT, PATCH or DELETE must also come from this server's own
pages (an ``Origin`` header, when sent, must be this host) and, with the cookie, carry the CSRF
token (``X-CSRF-Token`` header or a ``csrf`` form field); the body is read here and handed on
unchanged. Every response gets the security headers (a strict Content-Security-Policy: scripts,
styles and images from this server only, no inline script). Tokens are compared in constant time.

It is plain ASGI, so log streams pass through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Match

from rota.web.access import derive, same
from rota.web.context import WebContext
from rota.web.policy import PUBLIC, ROUTES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_BODY: Final = 1024 * 1024
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: Final = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


def cookie_name(ctx: WebContext) -> str:
    """The session cookie's name, distinct per token (per home)."""
    return "rota_session_" + derive(ctx.token, "cookie-name")[:12]


def route_path(scope: Scope) -> str | None:
    """The path template of the route *scope* goes to (None: no route)."""
    for route in scope["app"].router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return str(route.path)
    return None


def authenticated(request: Request, ctx: WebContext) -> str | None:
    """``bearer`` or ``cookie`` when the request carries the token or the session; else None.

    A request with an ``Authorization`` header is judged by it alone: a wrong or empty bearer
    token is refused even beside a good cookie.
    """
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        ok = scheme.lower() == "bearer" and same(value.strip(), ctx.token)
        return "bearer" if ok else None
    if same(request.cookies.get(cookie_name(ctx)), ctx.session):
        return "cookie"
    return None


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _form_field(body: bytes, name: str) -> str | None:
    try:
        values = parse_qs(body.decode("ascii"), max_num_fields=200).get(name)
    except (UnicodeDecodeError, ValueError):
        return None
    return values[0] if values else None


def unauthorized(request: Request, ctx: WebContext, *, wrong: bool = False) -> Response:
    """401: the login form for a browser's page request, else a JSON error."""
    headers = {"www-authenticate": 'Bearer realm="rota"'}
    if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        page = ctx.env.get_template("login.html").render(wrong=wrong)
        return HTMLResponse(page, status_code=401, headers=headers)
    detail = "a valid token is needed (Authorization: Bearer TOKEN, or log in at /login)"
    return JSONResponse({"detail": detail}, status_code=401, headers=headers)


class Guard:
    """ASGI middleware applying the policy table (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        path = route_path(scope)
        if path is not None and ROUTES.get(path) == PUBLIC:
            await self.app(scope, receive, send)
            return
        ctx: WebContext = scope["app"].state.web
        request = Request(scope)
        refusal, receive = await self._check(request, ctx, path, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _check(
        self, request: Request, ctx: WebContext, path: str | None, receive: Receive
    ) -> tuple[Response | None, Receive]:
        """A refusal, or None; and the receive channel to hand on (the body read, replayed)."""
        unsafe = request.method not in SAFE_METHODS
        if path == "/login" and request.method == "POST":
            body = await _read_body(receive)
            if body is None or not same(_form_field(body, "token"), ctx.token):
                return unauthorized(request, ctx, wrong=True), receive
            request.scope.setdefault("state", {})["auth"] = "form"
            return None, _replay(body, receive)
        how = authenticated(request, ctx)
        if how is None:
            return unauthorized(request, ctx), receive
        request.scope.setdefault("state", {})["auth"] = how
        if not unsafe:
            return None, receive
        if not _same_origin(request):
            return JSONResponse({"detail": "cross-origin request refused"}, 403), receive
        if how != "cookie":
            return None, receive
        body = await _read_body(receive)
        given = request.headers.get("x-csrf-token") or (
            _form_field(body, "csrf") if body is not None else None
        )
        if body is None or not same(given, ctx.csrf):
            return JSONResponse({"detail": "missing or wrong CSRF token"}, 403), receive
        return None, _replay(body, receive)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None past MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel giving *body* first, then what *receive* gives (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(n, v) for n, v in HEADERS if n not in present]
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return wrapped
