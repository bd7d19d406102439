"""``rota clear`` gives a cleared task its full retry budget again; a plain ``rota resume`` keeps
counting the tries it has used.

Airflow's clear resets a task instance's ``max_tries`` to its try number plus its retries, so a
task that exhausted its retries and is cleared gets them all again. Before, Rota counted every
try the task ever made, so a cleared task had one attempt. Each flow below fails until its
ledger (one line per attempt) is long enough.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clihelp import RotaCli

from rota.model.states import TaskState
from rota.store.sql import SqlStore

WriteFlow = Callable[[str, str], Path]

FLAKY = """
import os
from pathlib import Path

from rota import flow, task

LEDGER = Path(os.environ["LEDGER"])


@task(retries=1)
def flaky() -> int:
    with LEDGER.open("a") as fh:
        fh.write("try\\n")
    tries = len(LEDGER.read_text().split())
    if tries <= 4:
        raise RuntimeError(f"attempt {tries} fails")
    return tries


@task
def after(n: int) -> int:
    return n + 1


@flow
def flaky_flow():
    after(flaky())
"""

MAPPED = """
import os
from pathlib import Path

from rota import flow, task

LEDGER = Path(os.environ["LEDGER"])


@task(retries=1)
def item(x: int) -> int:
    with LEDGER.open("a") as fh:
        fh.write(f"{x}\\n")
    tries = LEDGER.read_text().split().count(str(x))
    if x == 1 and tries <= 4:
        raise RuntimeError(f"attempt {tries} of item 1 fails")
    return x


@flow
def mapped_flow():
    item.map(x=[0, 1])
"""


def ledger(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_clear_gives_a_task_its_full_retry_budget_and_resume_does_not(
    rota: RotaCli, tmp_path: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = write_flow("flaky.py", FLAKY)
    env = {"LEDGER": str(tmp_path / "ledger")}
    first = rota("run", str(path), "--json", env=env)
    assert first.code == 1 and len(ledger(tmp_path / "ledger")) == 2  # tries 1 and 2 failed
    run_id = first.json()["run_id"]

    resumed = rota("resume", run_id, "--json", env=env)  # keeps counting: one more try
    assert resumed.code == 1, resumed.err
    assert len(ledger(tmp_path / "ledger")) == 3
    shown = resumed.json()["tasks"]["flaky"]
    assert (shown["state"], shown["attempts"]) == ("failed", 3)

    cleared = rota("clear", run_id, "--task", "flaky", env=env)
    assert cleared.code == 0, cleared.err
    again = rota("resume", run_id, "--json", env=env)  # a full budget: try 4 fails, try 5 works
    assert again.code == 0, again.err
    assert len(ledger(tmp_path / "ledger")) == 5
    assert again.json()["state"] == "success"
    flaky = sorted((a for a in store.attempts(run_id) if a.task_id == "flaky"),
                   key=lambda a: a.try_number)  # fmt: skip
    assert [a.state for a in flaky] == [
        TaskState.UP_FOR_RETRY, TaskState.FAILED, TaskState.FAILED,
        TaskState.UP_FOR_RETRY, TaskState.SUCCESS,
    ]  # fmt: skip
    assert [a.cleared_at is not None for a in flaky] == [False, False, False, True, False]


def test_a_plain_resume_after_a_clear_keeps_counting_from_the_clear(
    rota: RotaCli, tmp_path: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = write_flow("flaky.py", FLAKY.replace("tries <= 4", "tries <= 6"))
    env = {"LEDGER": str(tmp_path / "ledger")}
    run_id = rota("run", str(path), "--json", env=env).json()["run_id"]  # tries 1, 2
    assert rota("clear", run_id, "--task", "flaky", env=env).code == 0
    assert rota("resume", run_id, env=env).code == 1  # the budget again: tries 3, 4
    assert len(ledger(tmp_path / "ledger")) == 4
    assert rota("resume", run_id, env=env).code == 1  # no new budget: try 5 only
    assert len(ledger(tmp_path / "ledger")) == 5


def test_clearing_a_mapped_task_gives_its_failed_instances_their_budget(
    rota: RotaCli, tmp_path: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = write_flow("mapped.py", MAPPED)
    env = {"LEDGER": str(tmp_path / "ledger")}
    first = rota("run", str(path), "--json", env=env)
    assert first.code == 1
    run_id = first.json()["run_id"]
    assert rota("resume", run_id, env=env).code == 1  # instance 1: one more try, fails
    assert ledger(tmp_path / "ledger").count("1") == 3
    assert rota("clear", run_id, "--task", "item", env=env).code == 0
    again = rota("resume", run_id, "--json", env=env)  # instance 1: tries 4 (fails) and 5
    assert again.code == 0, again.err
    assert ledger(tmp_path / "ledger").count("1") == 5
    assert ledger(tmp_path / "ledger").count("0") == 1  # its success was kept
    assert again.json()["tasks"]["item"]["mapped"] == {"count": 2, "success": 2}
