"""Every code block of the README and of docs/ runs, as the page shows it, or says why not.

Each page gets a working folder and a Rota home of its own; its ``python`` blocks run in order in
one namespace (tasks in this process: ``ROTA_EXECUTOR=inprocess``), its ``$ rota ...`` lines run
as real commands in that folder, and ``<!-- file: PATH -->`` blocks are written there first. A
failure names the page and the line of the block (tracebacks point into the Markdown file).
The rules for markers are in ``mdblocks``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
from mdblocks import RUN_PYTHON, RUN_SHELL, Block, blocks, problem

from rota.model.flows import Flow, FlowFunction

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
SKETCH_BUDGET = 16  # blocks that do not run, over all pages: raise it on purpose, not by drift
COMMAND_TIMEOUT = 180  # seconds a documented command may take on a loaded machine


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_every_block_runs_or_is_marked() -> None:
    problems = [p for page in PAGES for b in blocks(page, ROOT) if (p := problem(b))]
    assert not problems, "\n".join(problems)


def test_sketches_are_few_and_say_why() -> None:
    sketches = [b for page in PAGES for b in blocks(page, ROOT) if b.sketch is not None]
    listing = "\n".join(f"{b.where}: {b.sketch}" for b in sketches)
    assert all(b.sketch for b in sketches), listing
    assert len(sketches) <= SKETCH_BUDGET, f"{len(sketches)} sketches:\n{listing}"


def test_every_page_has_code_that_runs() -> None:
    """A page whose every block is a sketch tests nothing: each page with code runs some."""
    idle = []
    for page in PAGES:
        found = blocks(page, ROOT)
        runnable = [b for b in found if b.sketch is None and b.lang in RUN_PYTHON | RUN_SHELL]
        if found and not runnable and not all(b.lang == "text" for b in found):
            idle.append(_rel(page))
    assert not idle, f"pages with code but none that runs: {idle}"


def _needs_postgres(page: Path) -> bool:
    """A page that says ``<!-- needs: postgres -->`` runs against a real PostgreSQL database."""
    return "<!-- needs: postgres -->" in page.read_text(encoding="utf-8")


def _marks(page: Path) -> list[pytest.MarkDecorator]:
    return [pytest.mark.postgres] if _needs_postgres(page) else []


@pytest.mark.parametrize(
    "page", [pytest.param(p, id=_rel(p), marks=_marks(p)) for p in PAGES]
)  # fmt: skip
def test_page_code_runs(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = _environment(tmp_path / "rota-home", monkeypatch)
    if _needs_postgres(page):  # what the page tells the reader to export, pointed at a real one
        env["ROTA_DATABASE_URL"] = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("ROTA_DATABASE_URL", env["ROTA_DATABASE_URL"])
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    before = set(sys.modules)
    namespace: dict[str, Any] = {"__name__": "docs_" + page.stem.replace("-", "_")}
    try:
        for block in blocks(page, ROOT):
            _do(block, work, env, namespace)
    finally:
        for name in set(sys.modules) - before:  # modules the page imported from its folder
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if origin.startswith(str(tmp_path)):
                del sys.modules[name]


def _environment(home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The page's Rota settings, for this process and the commands it runs."""
    for name in list(os.environ):
        if name.startswith("ROTA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ROTA_HOME", str(home))
    monkeypatch.setenv("ROTA_EXECUTOR", "inprocess")
    monkeypatch.setenv("ROTA_WORKERS", "2")
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    monkeypatch.setenv("PATH", path)
    return dict(os.environ)


def _do(block: Block, work: Path, env: dict[str, str], namespace: dict[str, Any]) -> None:
    if problem(block):
        pytest.fail(problem(block), pytrace=False)
    if block.sketch is not None:
        if block.lang in RUN_PYTHON:
            _compile(block)
    elif block.file is not None:
        target = work / block.file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text, encoding="utf-8")
        if target.suffix == ".py":
            _compile(block)
    elif block.lang in RUN_PYTHON:
        _execute(block, namespace)
    elif block.lang in RUN_SHELL:
        for line, cmd, wanted in block.commands():
            _command(block, line, cmd, wanted, work, env)


def _compile(block: Block) -> Any:
    # padded so that a line number in an error or a traceback is the line in the Markdown file
    source = "\n" * (block.line - 1) + block.text
    try:
        return compile(source, str(block.path), "exec")
    except SyntaxError as err:
        pytest.fail(f"{block.where}: the block does not compile: {err}", pytrace=False)


def _execute(block: Block, namespace: dict[str, Any]) -> None:
    code = _compile(block)
    failure = ""
    try:
        exec(code, namespace)
    except Exception as err:
        failure = f"{block.where}: the block raised {err!r}\n" + "".join(
            traceback.format_exception(err)
        )
    if not failure:
        failure = _build_new_flows(block, namespace)
    if failure:
        pytest.fail(failure, pytrace=False)


def _build_new_flows(block: Block, namespace: dict[str, Any]) -> str:
    """Build each flow the block defined (its graph, templates and parameters checked, as
    ``rota run`` checks them), or say which one does not build."""
    built: list[object] = namespace.setdefault("__built_flows__", [])  # kept alive: ids stay theirs
    for name, value in list(namespace.items()):
        if not isinstance(value, Flow | FlowFunction) or any(value is b for b in built):
            continue
        built.append(value)
        try:
            value.build()
        except Exception as err:
            return f"{block.where}: flow {name!r} does not build: {type(err).__name__}: {err}"
    return ""


def _command(
    block: Block, line: int, cmd: str, wanted: int, work: Path, env: dict[str, str]
) -> None:
    done = subprocess.run(
        ["bash", "-c", cmd],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    if done.returncode != wanted:
        pytest.fail(
            f"{block.shown}:{line}: `{cmd}` exited {done.returncode}, the page says "
            f"{wanted}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}",
            pytrace=False,
        )


def test_markers_are_read() -> None:
    """The parser sees a sketch, a file, an expected exit code and a line number."""
    page = Path(__file__).with_name("sample.md")
    found = blocks(page, ROOT)
    assert [(b.lang, b.line, b.sketch, b.file) for b in found] == [
        ("python", 4, None, None),
        ("python", 10, "an Airflow DAG", None),
        ("python", 15, None, "flows/hello.py"),
        ("console", 18, None, None),
        ("text", 24, None, None),
        ("", 28, None, None),
    ]
    assert found[3].commands() == [(18, "rota run flows/hello.py", 0), (20, "false  # exit 1", 1)]
    assert problem(found[5]) is not None  # a bare fence must say what it is
    assert [problem(b) for b in found[:5]] == [None] * 5
