"""Pools and marks in the UI: the pools API and page show what `rota pools list` shows; a mark
from the API is `rota mark`."""

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


def test_mark_from_the_api_is_rota_mark_and_the_task_page_offers_it(
    ui: Server, small_run: str
) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    page = ui.request("GET", f"/runs/{small_run}/tasks/second")
    assert page.status == 200
    assert 'id="mark-success"' in page.body.decode() and 'id="mark-failed"' in page.body.decode()

    bad = ui.request("POST", f"/api/runs/{small_run}/mark", headers=form,
                     body=b"task=second&state=running")  # fmt: skip
    assert bad.status == 400 and b"success or failed" in bad.body

    reply = ui.request("POST", f"/api/runs/{small_run}/mark", headers=form,
                       body=b"task=second&state=failed")  # fmt: skip
    assert reply.status == 200, reply.body
    said = json.loads(reply.body)["message"]
    assert f"marked 1 task(s) of run {small_run} failed: second" in said
    run = json.loads(ui.request("GET", f"/api/runs/{small_run}").body)
    states = {t["task_id"]: t["state"] for t in run["tasks"]}
    assert states == {"first": "success", "second": "failed"}
