"""Fixtures for end-to-end tests of the ``rota`` command, run in a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clihelp import Result, RotaCli

from rota.store.sql import SqlStore, open_store


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "rota-home"
    path.mkdir()
    return path


@pytest.fixture
def rota(home: Path, tmp_path: Path) -> RotaCli:
    """Run ``python -m rota ARGS`` with ROTA_HOME in a temporary folder."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        full_env = {**os.environ, "ROTA_HOME": str(home), "ROTA_WORKERS": "2", **(env or {})}
        full_env.pop("ROTA_DATABASE_URL", None)
        proc = subprocess.run(
            [sys.executable, "-m", "rota", *args],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=tmp_path,
            timeout=timeout,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def write_flow(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a flow file (dedented) into the test's folder and return its path."""

    def write(name: str, source: str) -> Path:
        path = tmp_path / "flows" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path

    return write


@pytest.fixture
def store(home: Path) -> Iterator[SqlStore]:
    """The SQLite store in the test's ROTA_HOME, as `rota` subprocesses see it."""
    with open_store(f"sqlite:///{home}/rota.db") as s:
        yield s
