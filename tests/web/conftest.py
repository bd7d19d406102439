"""Fixtures of the web tests: a home with runs in it, and a real ``rota ui`` serving it."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from webhelp import Server, rota, start_ui

SMALL_FLOW = """
from rota import flow, task

@task
def first() -> int:
    print("first says hello")
    return 1

@task
def second(x: int) -> dict:
    return {"x": x}

@flow
def small(note: str = "plain"):
    second(first())
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def small_run(home: Path, tmp_path: Path) -> str:
    """A finished run of a two-task flow; its run id."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "small.py").write_text(textwrap.dedent(SMALL_FLOW))
    done = rota(home, tmp_path, "run", str(flows / "small.py"), "--executor", "inprocess",
                "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    import json

    return str(json.loads(done.stdout.strip().splitlines()[-1])["run_id"])


@pytest.fixture
def ui(home: Path, tmp_path: Path) -> Iterator[Server]:
    server = start_ui(home, tmp_path / "ui.log")
    try:
        yield server
    finally:
        server.stop()
