"""``rota runs prune`` forgets old runs with their rows, logs and outputs (and says what that
frees), keeps runs whose outputs newer cache hits read; ``rota runs cancel`` and ``rota flows
pause`` are the issue's names, ``rota cancel`` and ``rota pause`` the same commands."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clihelp import RotaCli
from sqlalchemy import create_engine, update

from rota.store.sql import SqlStore
from rota.store.tables import runs

WriteFlow = Callable[[str, str], Path]

FLOW = """
import os
from rota import flow, task

@task(cache=True)
def load(n: int) -> list[int]:
    print("loading", n)
    return list(range(n))

@task
def total(xs: list[int]) -> int:
    print("adding", len(xs))
    return sum(xs)

@flow
def sums(n: int = 1000):
    total(load(n))
"""


def _age(home: Path, run_id: str, days: int) -> None:
    """Make *run_id* look as if it ended *days* ago (the test cannot wait a month)."""
    then = datetime.now(UTC) - timedelta(days=days)
    engine = create_engine(f"sqlite:///{home}/rota.db")
    with engine.begin() as conn:
        conn.execute(
            update(runs).where(runs.c.run_id == run_id).values(created_at=then, ended_at=then)
        )
    engine.dispose()


def _set_state(home: Path, run_id: str, state: str) -> None:
    engine = create_engine(f"sqlite:///{home}/rota.db")
    with engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.run_id == run_id).values(state=state))
    engine.dispose()


def _runs(rota: RotaCli, path: Path, *params: str) -> str:
    # outputs in files (none kept in their rows): what prune frees on disk is checked here
    done = rota("run", str(path), *params, "--json", env={"ROTA_INLINE_OUTPUT_MAX": "0"})
    assert done.code == 0, done
    return str(done.json()["run_id"])


def test_prune_deletes_old_runs_rows_logs_and_outputs_and_says_what_it_frees(
    rota: RotaCli, home: Path, store: SqlStore, write_flow: WriteFlow
) -> None:
    path = write_flow("sums.py", FLOW)
    old, new = _runs(rota, path, "-p", "n=1000"), _runs(rota, path, "-p", "n=5")
    _age(home, old, 40)
    for folder in (home / "logs" / old, home / "artifacts" / old):
        assert folder.is_dir() and any(folder.iterdir())

    dry = rota("runs", "prune", "--older-than", "30d", "--dry-run")
    assert dry.code == 0, dry
    assert re.search(r"would prune 1 run\(s\) .* would free 2 attempt row\(s\), \d", dry.out)
    assert f"  {old}  sums  success" in dry.out and new not in dry.out
    assert (home / "logs" / old).is_dir() and store.get_run(old).run_id == old

    done = rota("runs", "prune", "--older-than", "30d")
    assert done.code == 0, done
    assert re.search(
        r"pruned 1 run\(s\) .* freed 2 attempt row\(s\), [\d.]+ \w*B of logs", done.out
    )
    assert [r.run_id for r in store.list_runs()] == [new]
    assert not (home / "logs" / old).exists() and not (home / "artifacts" / old).exists()
    assert (home / "logs" / new).is_dir() and (home / "artifacts" / new).is_dir()
    assert rota("runs", "show", new).code == 0


def test_a_run_whose_outputs_a_newer_run_reuses_from_the_cache_is_kept(
    rota: RotaCli, home: Path, store: SqlStore, write_flow: WriteFlow
) -> None:
    path = write_flow("sums.py", FLOW)
    first, second = _runs(rota, path), _runs(rota, path)  # second's load is a cache hit
    assert {a.state.value for a in store.attempts(second) if a.task_id == "load"} == {"cached"}
    _age(home, first, 40)
    done = rota("runs", "prune", "--older-than", "30d")
    assert done.code == 0, done
    assert "pruned 0 run(s)" in done.out
    assert f"kept {first}: its outputs are cache hits of run(s) {second}" in done.out
    shown = rota("outputs", "show", second, "load")
    assert shown.code == 0 and "[0, 1, 2" in shown.out and f"artifacts/{first}/" in shown.out, shown
    _age(home, second, 40)  # both old: both go
    both = rota("runs", "prune", "--older-than", "30d")
    assert "pruned 2 run(s)" in both.out, both
    assert store.list_runs() == []


def test_prune_leaves_a_running_run_and_refuses_a_bad_age(
    rota: RotaCli, home: Path, store: SqlStore, write_flow: WriteFlow
) -> None:
    run_id = _runs(rota, write_flow("sums.py", FLOW))
    _age(home, run_id, 40)
    _set_state(home, run_id, "running")
    assert "pruned 0 run(s)" in rota("runs", "prune", "--older-than", "1d").out
    assert store.get_run(run_id).run_id == run_id
    for bad in ("30", "0d", "3y", "-1d"):
        refused = rota("runs", "prune", "--older-than", bad)
        assert refused.code == 2 and "is not an age" in refused.err, refused


def test_runs_cancel_takes_a_prefix_and_cancel_is_the_same_command(
    rota: RotaCli, home: Path, store: SqlStore, write_flow: WriteFlow
) -> None:
    run_id = _runs(rota, write_flow("sums.py", FLOW))
    ended = rota("runs", "cancel", run_id[:12])
    assert ended.code == 2 and f"run {run_id} has ended" in ended.err, ended  # the whole id
    _set_state(home, run_id, "interrupted")  # as a crashed runner leaves it
    done = rota("runs", "cancel", run_id[:12])
    assert done.code == 0 and f"run {run_id} cancelled" in done.out, done
    assert store.get_run(run_id).state.value == "failed"
    again = rota("cancel", "--last", "sums")  # the other spelling, the same command
    assert again.code == 2 and f"run {run_id} has ended" in again.err, again
    for args in (("runs", "cancel", "--help"), ("cancel", "--help")):
        assert "Examples:" in rota(*args).out
    assert rota("flows", "pause", "sums").out.strip() == "flow sums was paused"
    assert rota("pause", "sums").out.strip() == "flow sums was already paused"
    assert rota("flows", "unpause", "sums").out.strip() == "flow sums was unpaused"
