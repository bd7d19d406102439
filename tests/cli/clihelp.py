"""Shared values for the CLI tests (imported by the tests and by conftest.py)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    """What one ``rota`` invocation did."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """The last stdout line, parsed."""
        return json.loads(self.out.strip().splitlines()[-1])


RotaCli = Callable[..., Result]


def rota_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``rota`` subprocess with ROTA_HOME=*home* (its own SQLite store)."""
    env = {**os.environ, "ROTA_HOME": str(home), **extra}
    env.pop("ROTA_DATABASE_URL", None)
    return env


def wait_for(pred: Callable[[], bool], timeout: float, every: float = 0.1) -> None:
    """Poll *pred* until it holds; fail the test after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(every)
