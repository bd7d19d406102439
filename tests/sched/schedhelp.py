"""Shared helpers of the tests of several schedulers (imported by the tests in this folder)."""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from rota.store.sql import SqlStore


def rota_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``rota`` subprocess with ROTA_HOME=*home* (and *extra*)."""
    env = {**os.environ, "ROTA_HOME": str(home), **extra}
    for name in ("ROTA_FAULT_POINTS", "ROTA_EXECUTOR", "ROTA_HOSTNAME"):
        env.pop(name, None)
    return {**env, **extra}


def write_flow(folder: Path, name: str, source: str) -> Path:
    """Write a flow file (dedented) into *folder*; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def wait_for(pred: Callable[[], bool], timeout: float, every: float = 0.1) -> None:
    """Poll *pred* until it holds; fail the test after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(every)


@contextmanager
def runs_locked(store: SqlStore) -> Iterator[None]:
    """Another session holds an exclusive lock on the runs table: every statement on it waits
    (and fails once the waiting store's statement timeout passes)."""
    with store.engine.connect() as conn, conn.begin():
        conn.execute(text("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE"))
        yield
