"""Pools across schedulers, on a real PostgreSQL: two ``rota scheduler`` processes drive three
triggered runs whose tasks share a pool of 2 slots. Checked from the store: never more than 2 of
their attempts running at once (an overlap count of their start and end times), and the starts
in the order of the tasks' weights across the three runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from clihelp import wait_for

from rota.model.states import RUN_TERMINAL, RunState
from rota.store.base import AttemptRecord, Liveness, RunRecord
from rota.store.sql import SqlStore, open_store

FLOW = """
import time
from rota import PythonTask, flow

def work() -> None:
    time.sleep(1.5)

@flow(name="{name}")
def {name}():
    for w in {weights}:
        PythonTask(f"{name}_{{w}}", work, pool="gpu", priority_weight=w, weight_rule="absolute")
"""

WEIGHTS = {"run_a": [90, 40, 10, 5], "run_b": [80, 50, 20, 4], "run_c": [70, 60, 30, 3]}
TASKS = sum(len(ws) for ws in WEIGHTS.values())


def _env(home: Path, url: str) -> dict[str, str]:
    return {**os.environ, "ROTA_HOME": str(home), "ROTA_DATABASE_URL": url, "ROTA_WORKERS": "4"}


def _rota(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rota", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _scheduler(home: Path, url: str, flows: Path) -> subprocess.Popen[str]:
    """A ``rota scheduler`` process of its own ROTA_HOME on the shared database."""
    return subprocess.Popen(
        [sys.executable, "-m", "rota", "scheduler", "--flows", str(flows), "--tick", "0.5",
         "--max-active-runs", "2", "--workers-per-run", "4"],
        env=_env(home, url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir()
    for name, weights in WEIGHTS.items():
        (folder / f"{name}.py").write_text(FLOW.format(name=name, weights=weights))
    return folder


@pytest.fixture
def pg(postgres_url: str) -> Iterator[SqlStore]:
    with open_store(postgres_url) as store:
        yield store


def most_at_once(attempts: list[AttemptRecord]) -> int:
    """The most attempts running at one instant (an end before a start at a tie)."""
    events: list[tuple[datetime, int]] = []
    for a in attempts:
        assert a.started_at is not None and a.finished_at is not None, a
        events += [(a.started_at, 1), (a.finished_at, -1)]
    now = most = 0
    for _, change in sorted(events):
        now += change
        most = max(most, now)
    return most


def _waiting(store: SqlStore) -> int:
    live = Liveness("", datetime.now(UTC) - timedelta(seconds=30))
    return sum(p.waiting for p in store.pools(live) if p.name == "gpu")


def _runs(store: SqlStore) -> list[RunRecord]:
    return [r for r in store.list_runs() if r.flow in WEIGHTS]


def test_a_pool_of_2_slots_shared_by_3_runs_under_2_schedulers_on_postgresql(
    postgres_url: str, pg: SqlStore, flows: Path, tmp_path: Path
) -> None:
    homes = [tmp_path / "home_a", tmp_path / "home_b"]
    admin = _env(homes[0], postgres_url)
    made = _rota(admin, "pools", "set", "gpu", "0", "--description", "paused until all wait")
    assert made.returncode == 0, made.stderr
    for name in WEIGHTS:
        queued = _rota(admin, "trigger", name, "--flows", str(flows))
        assert queued.returncode == 0, queued.stderr
    schedulers = [_scheduler(home, postgres_url, flows) for home in homes]
    try:
        # every task of the three runs waits for the paused pool: both schedulers drive runs
        wait_for(lambda: _waiting(pg) == TASKS, timeout=120, every=0.2)
        opened = _rota(admin, "pools", "set", "gpu", "2")
        assert opened.returncode == 0, opened.stderr
        wait_for(
            lambda: len(runs := _runs(pg)) == 3 and all(r.state in RUN_TERMINAL for r in runs),
            timeout=180, every=0.5,
        )  # fmt: skip
    finally:
        for proc in schedulers:
            proc.send_signal(signal.SIGINT)
        errs = [proc.communicate(timeout=60)[1] for proc in schedulers]
    runs = _runs(pg)
    assert [r.state for r in runs] == [RunState.SUCCESS] * 3, errs
    driven = [{p.name for p in (home / "logs").iterdir() if p.name in {r.run_id for r in runs}}
              for home in homes]  # fmt: skip
    assert all(driven) and set.union(*driven) == {r.run_id for r in runs}, driven
    attempts = [a for r in runs for a in pg.attempts(r.run_id)]
    assert len(attempts) == TASKS and all(a.started_at for a in attempts)
    assert most_at_once(attempts) == 2  # the pool's 2 slots, never more (and both used)
    started = [a.task_id for a in sorted(attempts, key=lambda a: a.started_at or datetime.min)]
    by_weight = sorted(started, key=lambda t: -int(t.rsplit("_", 1)[1]))
    # two slots: the two tasks granted at once may start in either order, nothing more
    assert all(abs(i - by_weight.index(t)) <= 1 for i, t in enumerate(started)), started
    assert {t.rsplit("_", 1)[0] for t in started[:4]} == set(WEIGHTS), "by weight, not by run"
