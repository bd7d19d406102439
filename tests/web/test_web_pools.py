"""Pools in the UI: the API and page show what `rota pools list` shows; descriptions are text."""

from __future__ import annotations

import json
from pathlib import Path

from webhelp import Server, rota

MARKUP = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'


def test_pools_api_and_page_show_each_pool_as_the_cli_does(
    home: Path, tmp_path: Path, ui: Server
) -> None:
    made = rota(home, tmp_path, "pools", "set", "gpu", "2", "--description", MARKUP)
    assert made.returncode == 0, made.stderr
    listed = rota(home, tmp_path, "pools", "list", "--json")
    assert listed.returncode == 0, listed.stderr

    reply = ui.request("GET", "/api/pools")
    assert reply.status == 200
    shown = json.loads(reply.body)
    assert shown == json.loads(listed.stdout)
    gpu = next(p for p in shown if p["name"] == "gpu")
    assert (gpu["slots"], gpu["running"], gpu["waiting"], gpu["open"]) == (2, 0, 0, 2)
    assert gpu["description"] == MARKUP
    assert {p["name"] for p in shown} == {"default_pool", "gpu"}

    page = ui.request("GET", "/pools")
    assert page.status == 200
    html = page.body.decode()
    assert "<td>gpu</td>" in html and "<td>default_pool</td>" in html
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert ui.request("GET", "/api/pools", token=False).status == 401
