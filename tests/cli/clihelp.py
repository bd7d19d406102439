"""Shared values for the CLI tests (imported by the tests and by conftest.py)."""

from __future__ import annotations

import json
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
