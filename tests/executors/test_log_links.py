"""No name a worker writes its output to can be redirected by a planted symbolic link.

The logs folder is private (0700) and checked at the CLI's edge, but the names in it are
predictable: an attempt's log is ``logs/<run>/<task>/<try>.log``, written while the attempt runs.
These tests plant a symbolic link at every such name before the attempts run, in real worker
processes and threads, and check that no write goes through one.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rota.executors.base import AttemptEvent, AttemptOutcome, AttemptSpec, Executor
from rota.executors.pool import LocalPoolExecutor
from rota.executors.threads import ThreadExecutor
from rota.operators.python import PythonOp

PRECIOUS = b"precious, not a log\n"


def chatty(word: str) -> str:
    """Print through Python, through fd 1 directly and through a child process."""
    print(f"python says {word}", flush=True)
    os.write(2, f"fd 2 says {word}\n".encode())
    subprocess.run(["echo", f"child says {word}"], stdout=sys.stdout, check=True)
    return word


@dataclass
class Planted:
    """Planted symbolic links: each points at a victim file or at a missing path (a ghost)."""

    victims: list[Path]
    ghosts: list[Path]

    def plant(self, name: Path, outside: Path) -> None:
        name.parent.mkdir(parents=True, exist_ok=True)
        victim = outside / f"victim-{len(self.victims)}"
        victim.write_bytes(PRECIOUS)
        ghost = outside / f"ghost-{len(self.ghosts)}"
        self.victims.append(victim)
        self.ghosts.append(ghost)
        # at *name* a link to an existing file; beside it, ready to be moved to *name*, a link
        # to a missing one (a write through it would create the file)
        os.symlink(victim, name)
        os.symlink(ghost, name.with_name(name.name + ".ghost"))

    def assert_untouched(self) -> None:
        for victim in self.victims:
            assert victim.read_bytes() == PRECIOUS, f"{victim} was written through a link"
        for ghost in self.ghosts:
            assert not os.path.lexists(ghost), f"{ghost} was created through a link"


def _spec(logs: Path, tmp: Path, attempt_id: int, *, pokes: int = 0) -> AttemptSpec:
    return AttemptSpec(
        attempt_id=attempt_id,
        run_id="run1",
        flow="f",
        task_id=f"t{attempt_id}",
        map_index=-1,
        try_number=1,
        op=PythonOp(chatty),
        args=(f"w{attempt_id}",),
        kwargs={},
        inputs=(),
        artifacts=str(tmp / "artifacts"),
        log_path=str(logs / "run1" / f"t{attempt_id}" / "1.log"),
        pokes=pokes,
    )


def _drain(ex: Executor, n: int, timeout: float = 60) -> list[AttemptOutcome]:
    events: list[AttemptEvent] = []
    deadline = time.monotonic() + timeout
    while sum(isinstance(e, AttemptOutcome) for e in events) < n:
        assert time.monotonic() < deadline, f"timed out waiting; got {events}"
        events.extend(ex.poll(0.1))
    return [e for e in events if isinstance(e, AttemptOutcome)]


def _assert_private_log(path: Path, word: str) -> None:
    info = path.lstat()
    assert stat.S_ISREG(info.st_mode), f"{path} is not a plain file"
    assert stat.S_IMODE(info.st_mode) == 0o600
    text = path.read_text()
    for line in (f"python says {word}", f"fd 2 says {word}", f"child says {word}"):
        assert line in text


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    return path


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[LocalPoolExecutor, Path]]:
    logs = tmp_path / "logs"
    ex = LocalPoolExecutor(2, str(logs))
    yield ex, logs
    ex.close()


ATTEMPTS = range(1, 7)


def test_links_at_every_log_name_of_a_pool_never_redirect_a_write(
    pool: tuple[LocalPoolExecutor, Path], tmp_path: Path, outside: Path
) -> None:
    ex, logs = pool
    planted = Planted([], [])
    for i in ATTEMPTS:
        planted.plant(Path(_spec(logs, tmp_path, i).log_path), outside)
    for i in ATTEMPTS:
        ex.submit(_spec(logs, tmp_path, i))
    outcomes = _drain(ex, len(ATTEMPTS))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    planted.assert_untouched()
    for i in ATTEMPTS:
        _assert_private_log(Path(_spec(logs, tmp_path, i).log_path), f"w{i}")

    # Round two: links to missing files at the first logs; links to files at logs that a
    # sensor's later poke appends to. Every attempt appends (pokes=1).
    for i in ATTEMPTS:
        log = Path(_spec(logs, tmp_path, i).log_path)
        os.replace(log.with_name(log.name + ".ghost"), log)
        planted.plant(Path(_spec(logs, tmp_path, 100 + i).log_path), outside)
    for i in ATTEMPTS:
        ex.submit(_spec(logs, tmp_path, i, pokes=1))
        ex.submit(_spec(logs, tmp_path, 100 + i, pokes=1))
    outcomes = _drain(ex, 2 * len(ATTEMPTS))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    planted.assert_untouched()
    for i in ATTEMPTS:
        _assert_private_log(Path(_spec(logs, tmp_path, i).log_path), f"w{i}")
        _assert_private_log(Path(_spec(logs, tmp_path, 100 + i).log_path), f"w{100 + i}")


def test_links_at_the_log_names_of_threads_never_redirect_a_write(
    tmp_path: Path, outside: Path
) -> None:
    logs = tmp_path / "logs"
    planted = Planted([], [])
    ex = ThreadExecutor(2)
    try:
        for i in ATTEMPTS:
            planted.plant(Path(_spec(logs, tmp_path, i).log_path), outside)
            ex.submit(_spec(logs, tmp_path, i, pokes=i % 2))  # half of them append
        outcomes = _drain(ex, len(ATTEMPTS))
    finally:
        ex.close()
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    planted.assert_untouched()
    for i in ATTEMPTS:
        log = Path(_spec(logs, tmp_path, i).log_path)
        assert not stat.S_ISLNK(log.lstat().st_mode)
        assert stat.S_IMODE(log.lstat().st_mode) == 0o600
        assert f"python says w{i}" in log.read_text()
