"""The UI in a real browser: Playwright for Python driving Debian's Chromium.

A run's graph turns green while it runs; a failed task's log is read; clear + resume make the run
succeed; the Gantt chart outlines the critical path of a run whose slowest chain is known; values
holding markup render as text on every page (no dialog ever fires); screenshots of the graph,
grid, Gantt and reliability views go to docs/images/.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright
from webhelp import Server, rota, start_ui

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
WAIT_MS = 90_000

LIVE_FLOW = """
import os, time
from pathlib import Path
from rota import flow, task

GATE = Path(os.environ["ROTA_TEST_GATE"])

@task
def start() -> int:
    return 1

@task
def slow(x: int) -> int:
    deadline = time.time() + 120
    while not (GATE / "go").exists() and time.time() < deadline:
        time.sleep(0.05)
    return x

@task
def flaky(x: int) -> int:
    print("flaky looks for its fix <b>bold?</b>")
    if not (GATE / "fixed").exists():
        raise RuntimeError("flaky failed: no fix yet")
    return x

@task
def finish(a: int, b: int) -> int:
    return a + b

@flow
def live():
    s = start()
    finish(slow(s), flaky(s))
"""

CHAINS_FLOW = """
import os, time
from pathlib import Path
from rota import flow, task

GATE = Path(os.environ["ROTA_TEST_GATE"])

@task
def origin() -> int:
    return 1

@task
def quick(x: int) -> int:
    (GATE / "quick-done").touch()
    return x

@task
def long_haul(x: int) -> int:
    deadline = time.time() + 120  # ends after quick, whatever the machine's load
    while not (GATE / "quick-done").exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    return x

@task
def join(a: int, b: int) -> int:
    return a + b

@flow
def chains():
    o = origin()
    join(long_haul(o), quick(o))
"""

MARKUP = ["<script>alert(1)</script>", '"><img src=x onerror=alert(2)>', "javascript:alert(3)"]
XSS_FLOW = """
from rota import flow, task

@task
def shout(note: str) -> dict:
    print("log line:", note, "<img src=x onerror=alert(4)>")
    return {"note": note, "html": "<script>alert(5)</script>", "link": "javascript:alert(6)"}

@task
def boom(value: dict) -> None:
    raise ValueError("bad " + value["note"] + " <img src=x onerror=alert(7)>")

@flow
def xss(note: str = "plain"):
    boom(shout(note))
"""


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("Chromium is missing: `make test` installs it (scripts/ensure-chromium.sh)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    path = tmp_path / "gate"
    path.mkdir()
    return path


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    path = tmp_path / "flows"
    path.mkdir()
    for name, source in (("live.py", LIVE_FLOW), ("chains.py", CHAINS_FLOW), ("xss.py", XSS_FLOW)):
        (path / name).write_text(textwrap.dedent(source))
    return path


@pytest.fixture
def server(home: Path, tmp_path: Path, flows: Path, gate: Path) -> Iterator[Server]:
    ui = start_ui(home, tmp_path / "ui.log", "--flows", str(flows),
                  env={"ROTA_TEST_GATE": str(gate)})  # fmt: skip
    try:
        yield ui
    finally:
        ui.stop()


def logged_in(browser: Any, ui: Server, dialogs: list[str]) -> Any:
    context = browser.new_context(viewport={"width": 1200, "height": 760})
    page = context.new_page()
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{ui.url}/login")
    page.fill("input[name=token]", ui.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{ui.url}/")
    return page


def shoot(locator: Any, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    locator.screenshot(path=str(IMAGES / name))


def node(page: Any, task: str) -> Any:
    return page.locator(f'#graph [data-task="{task}"]')


def test_a_run_turns_green_a_failed_task_is_read_and_clear_resume_fixes_it(
    browser: Any, server: Server, gate: Path, home: Path, tmp_path: Path
) -> None:
    dialogs: list[str] = []
    page = logged_in(browser, server, dialogs)
    page.click("a[href='/flows/live']")
    page.click("#trigger button[type=submit]")
    page.wait_for_url(f"{server.url}/runs/*")
    run_id = page.url.rsplit("/", 1)[1]
    # live: start turns green while slow still waits at its gate, on the same page
    page.wait_for_selector('#graph [data-task="start"][data-state="success"]', timeout=WAIT_MS)
    assert node(page, "slow").get_attribute("data-state") in ("queued", "running")
    (gate / "go").touch()
    page.wait_for_selector('#graph [data-task="slow"][data-state="success"]', timeout=WAIT_MS)
    page.wait_for_selector('#run-state[data-state="failed"]', timeout=WAIT_MS)
    page.wait_for_selector('#graph [data-task="flaky"][data-state="failed"]', timeout=WAIT_MS)
    assert node(page, "finish").get_attribute("data-state") == "upstream_failed"
    # the failed task, its error and its log
    node(page, "flaky").click()
    page.wait_for_url(f"{server.url}/runs/{run_id}/tasks/flaky")
    assert "flaky failed: no fix yet" in page.locator("#error").inner_text()
    page.click("a.log-link")
    expect(page.locator("#log")).to_contain_text("flaky looks for its fix <b>bold?</b>")
    assert page.locator("#log b").count() == 0  # log text is text, never markup
    # fix it, clear it (with its downstream) and resume: the run succeeds
    (gate / "fixed").touch()
    page.go_back()
    page.click("#clear button[type=submit]")
    page.wait_for_url(f"{server.url}/runs/{run_id}")
    assert page.locator("#run-state").get_attribute("data-state") == "queued"
    assert node(page, "flaky").get_attribute("data-state") == "scheduled"
    page.click("#resume")
    page.wait_for_url(f"{server.url}/runs/{run_id}")
    page.wait_for_selector('#run-state[data-state="success"]', timeout=WAIT_MS)
    for task in ("start", "slow", "flaky", "finish"):
        assert node(page, task).get_attribute("data-state") == "success", task
    shoot(page.locator("#graph"), "graph.png")
    assert dialogs == []


def test_the_gantt_chart_outlines_the_critical_path(
    browser: Any, server: Server, home: Path, tmp_path: Path, flows: Path, gate: Path
) -> None:
    env_gate = {"ROTA_TEST_GATE": str(gate)}
    os.environ.update(env_gate)
    try:
        for _ in range(3):
            (gate / "quick-done").unlink(missing_ok=True)
            done = rota(home, tmp_path, "run", str(flows / "chains.py"), "--json")
            assert done.returncode == 0, done.stderr
    finally:
        os.environ.pop("ROTA_TEST_GATE")
    run_id = json.loads(done.stdout.strip().splitlines()[-1])["run_id"]
    dialogs: list[str] = []
    page = logged_in(browser, server, dialogs)
    page.goto(f"{server.url}/runs/{run_id}")
    critical = page.locator("#gantt .gantt-row.critical")
    assert [critical.nth(i).get_attribute("data-task") for i in range(critical.count())] == [
        "origin", "long_haul", "join",
    ]  # fmt: skip
    assert page.locator("#critical-path").inner_text() == "origin → long_haul → join"
    other = page.locator('#gantt .gantt-row[data-task="quick"]')
    assert "critical" not in (other.get_attribute("class") or "")
    shoot(page.locator("#gantt"), "gantt.png")
    page.goto(f"{server.url}/flows/chains")
    assert page.locator("#grid tbody tr").count() == 4
    shoot(page.locator("#grid"), "grid.png")
    page.goto(f"{server.url}/flows/chains/reliability")
    page.wait_for_selector("#reliability")
    assert page.locator("#predicted").inner_text() == "1.0000"
    assert page.locator("#reliability tbody tr").count() == 4
    shoot(page.locator("main"), "reliability.png")
    assert dialogs == []


def test_markup_in_params_errors_outputs_and_logs_renders_as_text(
    browser: Any, server: Server, home: Path, tmp_path: Path, flows: Path
) -> None:
    for value in MARKUP:
        done = rota(home, tmp_path, "run", str(flows / "xss.py"), "-p", f"note={value}",
                    "--executor", "inprocess", "--json")  # fmt: skip
        assert done.returncode == 1, done.stderr
    run_id = json.loads(done.stdout.strip().splitlines()[-1])["run_id"]
    dialogs: list[str] = []
    page = logged_in(browser, server, dialogs)
    pages = ["/", "/runs", "/flows/xss", "/flows/xss/reliability", f"/runs/{run_id}",
             f"/runs/{run_id}/tasks/shout", f"/runs/{run_id}/tasks/boom",
             f"/runs/{run_id}/tasks/shout/log?try=1", "/datasets", "/api/docs"]  # fmt: skip
    for target in pages:
        page.goto(f"{server.url}{target}")
        page.wait_for_load_state("networkidle")
        assert page.locator("img").count() == 0, target
        assert page.locator("script:not([src])").count() == 0, target
        hrefs = page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
        assert not [h for h in hrefs if h and h.lower().startswith("javascript:")], target
    page.goto(f"{server.url}/runs/{run_id}")
    assert "javascript:alert(3)" in page.locator("main").inner_text()  # shown, as text
    page.goto(f"{server.url}/runs/{run_id}/tasks/boom")
    assert "<img src=x onerror=alert(7)>" in page.locator("#error").inner_text()
    page.goto(f"{server.url}/runs/{run_id}/tasks/shout")
    assert "<script>alert(5)</script>" in page.locator("#output").inner_text()
    page.goto(f"{server.url}/runs/{run_id}/tasks/shout/log?try=1")
    expect(page.locator("#log")).to_contain_text("<img src=x onerror=alert(4)>")
    assert dialogs == []
