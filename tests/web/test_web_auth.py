"""Every route but /health needs the token: the route table, the token file, login and CSRF."""

from __future__ import annotations

import base64
import os
import re
import stat
from pathlib import Path
from typing import Any, cast

import pytest
from webhelp import Server, start_ui

from rota.web import api, policy
from rota.web.app import create_app

IDS = {"{run_id}": "", "{task_id}": "first", "{flow}": "small"}


def routes() -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves; a mount counts with GET."""
    app = create_app(cast(Any, object()))
    out: list[tuple[str, str]] = []
    for route in app.router.routes:
        methods = sorted(getattr(route, "methods", None) or {"GET"})
        out += [(m, str(route.path)) for m in methods if m != "HEAD"]
    return out


def concrete(path: str, run_id: str) -> str:
    for key, value in {**IDS, "{run_id}": run_id}.items():
        path = path.replace(key, value)
    return {"/static": "/static/rota.css", "/api/lineage": "/api/lineage?uri=none"}.get(path, path)


def test_every_route_has_a_policy_entry_and_every_entry_a_route() -> None:
    paths = {path for _, path in routes()}
    assert paths == set(policy.ROUTES)
    assert {p for p, how in policy.ROUTES.items() if how == policy.PUBLIC} == {"/health"}


def test_a_route_added_without_a_policy_entry_stops_the_app() -> None:
    api.router.add_api_route("/api/unlisted", lambda: {"secret": 1}, methods=["GET"])
    try:
        with pytest.raises(policy.MissingPolicy, match="/api/unlisted"):
            create_app(cast(Any, object()))
    finally:
        api.router.routes.pop()
    create_app(cast(Any, object()))


BAD_AUTH = [None, "Bearer wrong-token-0123456789abcdef0123456789abcdef012", "Bearer ", "Bearer",
            "Basic dXNlcjpwYXNz", "bearer  "]  # fmt: skip


def test_every_route_but_health_refuses_a_missing_wrong_or_empty_token(
    ui: Server, small_run: str
) -> None:
    table = routes()
    assert len(table) > 30
    for method, path in table:
        target = concrete(path, small_run)
        for auth in BAD_AUTH:
            headers = {} if auth is None else {"Authorization": auth}
            body = b"token=x&csrf=y" if method == "POST" else None
            if body is not None:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            reply = ui.request(method, target, headers=headers, body=body, token=False)
            if path == "/health":
                assert reply.status == 200, (method, target, auth)
            else:
                assert reply.status == 401, (method, target, auth, reply.status, reply.body[:200])
                assert b"first says hello" not in reply.body
    # a path no route serves is refused too, before anything says it does not exist
    assert ui.request("GET", "/no/such/page", token=False).status == 401
    # with the token, every page and read route answers
    for method, path in table:
        if method == "GET" and path not in ("/login",):
            reply = ui.request("GET", concrete(path, small_run))
            assert reply.status in (200, 404), (path, reply.status, reply.body[:300])
            assert reply.status == 200 or path == "/api/lineage", path


def test_responses_carry_a_strict_content_security_policy(ui: Server, small_run: str) -> None:
    for target in ("/", f"/runs/{small_run}", "/health", "/no/such/page"):
        reply = ui.request("GET", target)
        csp = reply.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert reply.headers["x-content-type-options"] == "nosniff"
    page = ui.request("GET", f"/runs/{small_run}").body.decode()
    assert re.search(r"<script>(?!</script>)", page) is None  # no inline script
    assert '<script src="/static/' in page


def test_the_token_is_random_private_and_one_per_home(tmp_path: Path, ui: Server) -> None:
    info = (ui.home / "ui-token").stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    token = ui.token
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) >= 32
    log = (tmp_path / "ui.log").read_text()
    assert log.count(token) == 1  # printed once, with the URL, on the first start
    other_home = tmp_path / "other"
    other_home.mkdir(mode=0o700)
    other = start_ui(other_home, tmp_path / "other.log")
    try:
        assert other.token != token
        assert other.request("GET", "/api/flows", headers={"Authorization": f"Bearer {token}"},
                             token=False).status == 401  # fmt: skip
        assert other.request("GET", "/api/flows").status == 200
    finally:
        other.stop()
    ui.stop()
    again = start_ui(ui.home, tmp_path / "again.log")
    try:
        assert again.token == token
        assert token not in (tmp_path / "again.log").read_text()  # not printed again
    finally:
        again.stop()


def test_a_token_file_others_can_read_is_refused(tmp_path: Path, home: Path) -> None:
    from webhelp import rota

    (home / "ui-token").write_text("x" * 50)
    os.chmod(home / "ui-token", 0o644)
    done = rota(home, tmp_path, "ui", "--port", "0")
    assert done.returncode == 2
    assert "ui-token is not a private file" in done.stderr and "Traceback" not in done.stderr


def _cookie(reply_headers: dict[str, str]) -> str:
    return reply_headers["set-cookie"].split(";", 1)[0]


def test_login_sets_a_strict_httponly_cookie_and_posts_need_the_csrf_token(
    ui: Server, small_run: str
) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    wrong = ui.request("POST", "/login", headers=form, body=b"token=nope", token=False)
    assert wrong.status == 401 and "set-cookie" not in wrong.headers
    page = ui.request("GET", "/", headers={"Accept": "text/html"}, token=False)
    assert page.status == 401 and b'name="token"' in page.body  # the login form
    good = ui.request("POST", "/login", headers=form, body=f"token={ui.token}".encode(),
                      token=False)  # fmt: skip
    assert good.status == 303
    cookie = good.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert ui.token not in cookie  # the cookie is derived from the token, not the token
    jar = {"Cookie": _cookie(good.headers)}
    assert ui.request("GET", "/api/flows", headers=jar, token=False).status == 200
    target = "/api/flows/small/pause"
    no_csrf = ui.request("POST", target, headers={**jar, **form}, body=b"next=/", token=False)
    assert no_csrf.status == 403
    html = ui.request("GET", "/", headers=jar, token=False).body.decode()
    csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', html)
    assert csrf is not None
    foreign = ui.request("POST", target, headers={**jar, **form, "Origin": "http://evil.test"},
                         body=f"csrf={csrf.group(1)}".encode(), token=False)  # fmt: skip
    assert foreign.status == 403
    ok = ui.request("POST", target, headers={**jar, **form},
                    body=f"csrf={csrf.group(1)}&next=/".encode(), token=False)  # fmt: skip
    assert ok.status == 303
    flows = ui.request("GET", "/api/flows").body
    assert b'"paused":true' in flows
