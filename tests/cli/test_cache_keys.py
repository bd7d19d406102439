"""Cache keys end to end through ``rota``: what a cached task's result depends on is in its key.

Every test counts real executions with a ledger file the tasks append to.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clihelp import RotaCli

from rota.model.states import TaskState
from rota.store.sql import SqlStore


def _ledger(path: Path) -> list[str]:
    steps = path.read_text().split() if path.exists() else []
    path.unlink(missing_ok=True)
    return steps


MAPPED = """
import os
from pathlib import Path
from rota import flow, task

LEDGER = Path(os.environ["LEDGER"])


def mark(name: str) -> None:
    with LEDGER.open("a") as fh:
        fh.write(name + "\\n")


@task(cache=True)
def nums() -> list[int]:
    mark("nums")
    return [1, 2, 3]


@task(cache=True)
def sq(v: int) -> int:
    mark(f"sq{v}")
    return v * v


@task
def total(xs: list[int]) -> int:
    mark("total")
    if Path(os.environ["LEDGER"] + ".fail").exists():
        raise RuntimeError("total is broken")
    return sum(xs)


@flow
def mapped():
    total(sq.map(nums()))
"""


def test_a_mapped_cached_task_run_twice_shows_every_instance_cached_and_resumes(
    rota: RotaCli, tmp_path: Path, store: SqlStore, write_flow: Callable[[str, str], Path]
) -> None:
    # issue 10 §6: the second run crashed with "sq was already reported finished" and stayed
    # running; `rota resume` crashed the same way
    ledger = tmp_path / "ledger"
    env = {"LEDGER": str(ledger)}
    path = write_flow("mapped.py", MAPPED)
    first = rota("run", str(path), "--json", env=env)
    assert first.code == 0, first.err
    assert sorted(_ledger(ledger)) == ["nums", "sq1", "sq2", "sq3", "total"]

    Path(f"{ledger}.fail").touch()  # the second run fails after its cache hits
    second = rota("run", str(path), "--json", env=env)
    assert second.code == 1, second.err
    assert "Traceback" not in second.err
    assert _ledger(ledger) == ["total"]
    summary = second.json()
    assert summary["state"] == "failed"
    assert summary["tasks"]["nums"]["state"] == "cached"
    assert summary["tasks"]["sq"]["state"] == "success"
    assert summary["tasks"]["sq"]["mapped"] == {"count": 3, "cached": 3}
    run_id = summary["run_id"]
    rows = [a for a in store.attempts(run_id) if a.task_id == "sq"]
    assert sorted((a.map_index, a.state) for a in rows) == [
        (-1, TaskState.SUCCESS),
        *((i, TaskState.CACHED) for i in range(3)),
    ]
    assert all(a.cached_from is not None for a in rows if a.map_index >= 0)

    Path(f"{ledger}.fail").unlink()
    resumed = rota("resume", run_id, "--json", env=env)
    assert resumed.code == 0, resumed.err
    assert _ledger(ledger) == ["total"], "the instances are reused, not run again"
    # a cache hit is a success: resume keeps it (it planned to run `nums` again)
    assert "1 task(s) to run, 2 succeeded task(s) kept" in " ".join(resumed.err.split())
    assert "cached in try" not in resumed.err
    assert resumed.json()["state"] == "success"
    latest = {a.map_index: a.state for a in store.attempts(run_id) if a.task_id == "sq"}
    assert latest == {
        -1: TaskState.SUCCESS,
        0: TaskState.CACHED,
        1: TaskState.CACHED,
        2: TaskState.CACHED,
    }
