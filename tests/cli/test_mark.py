"""``rota mark``: Airflow's "mark success" and "mark failed" from the command line.

A mark adds an attempt made already ended in the chosen state: the task does not run, ended
attempts are never changed. A task marked success hands None downstream (it stored no output)
and, as Airflow's ``set_task_instance_state`` does for either state, the failed and
upstream-failed tasks below the named ones are cleared so that a resume runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clihelp import RotaCli

from rota.model.states import RunState, TaskState
from rota.store.sql import SqlStore

WriteFlow = Callable[[str, str], Path]

CHAIN = """
import os
from pathlib import Path

from rota import flow, task

LEDGER = Path(os.environ["LEDGER"])


@task
def fetch() -> int:
    with LEDGER.open("a") as fh:
        fh.write("fetch\\n")
    raise RuntimeError("the source is down")


@task
def clean(x) -> str:
    with LEDGER.open("a") as fh:
        fh.write("clean\\n")
    return f"got {x!r}"


@task
def report(text: str) -> str:
    return text.upper()


@flow
def chain():
    report(clean(fetch()))
"""

MAPPED = """
from rota import flow, task


@task
def item(x: int) -> int:
    return x


@flow
def mapped():
    item.map(x=[0, 1])
"""


def _latest(store: SqlStore, run_id: str) -> dict[str, tuple[int, TaskState]]:
    out: dict[str, tuple[int, TaskState]] = {}
    for a in store.attempts(run_id):
        if a.map_index < 0 and a.try_number >= out.get(a.task_id, (0, a.state))[0]:
            out[a.task_id] = (a.try_number, a.state)
    return out


def test_marking_a_failed_task_success_lets_a_resume_run_what_is_below_it(
    rota: RotaCli, tmp_path: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = write_flow("chain.py", CHAIN)
    env = {"LEDGER": str(tmp_path / "ledger")}
    first = rota("run", str(path), "--json", env=env)
    assert first.code == 1, first.err
    run_id = first.json()["run_id"]
    assert _latest(store, run_id) == {
        "fetch": (1, TaskState.FAILED), "clean": (1, TaskState.UPSTREAM_FAILED),
        "report": (1, TaskState.UPSTREAM_FAILED),
    }  # fmt: skip

    marked = rota("mark", run_id, "--task", "fetch", "--state", "success", env=env)
    assert marked.code == 0, marked.err
    assert f"marked 1 task(s) of run {run_id} success: fetch; cleared clean, report" in marked.out
    assert store.get_run(run_id).state is RunState.QUEUED
    latest = _latest(store, run_id)
    assert latest["fetch"] == (2, TaskState.SUCCESS)
    assert latest["clean"][1] is TaskState.SCHEDULED and latest["report"][1] is TaskState.SCHEDULED

    resumed = rota("resume", run_id, "--json", env=env)
    assert resumed.code == 0, resumed.err
    assert resumed.json()["state"] == "success"
    assert (tmp_path / "ledger").read_text().split() == ["fetch", "clean"], "fetch never ran again"
    shown = rota("outputs", "show", run_id, "report", env=env)
    assert shown.code == 0, shown.err
    assert "GOT NONE" in shown.out, "a task marked success hands None downstream"
    fetch = [a for a in store.attempts(run_id) if a.task_id == "fetch"]
    assert [(a.try_number, a.state, a.started_at is None) for a in fetch] == [
        (1, TaskState.FAILED, False), (2, TaskState.SUCCESS, True),
    ]  # fmt: skip


def test_marking_a_task_failed_clears_only_what_failed_below_it_as_airflow_does(
    rota: RotaCli, tmp_path: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    works = CHAIN.replace('raise RuntimeError("the source is down")', "return 7")
    path = write_flow("chain.py", works)
    env = {"LEDGER": str(tmp_path / "ledger")}
    run_id = rota("run", str(path), "--json", env=env).json()["run_id"]
    assert store.get_run(run_id).state is RunState.SUCCESS

    # report below succeeded: nothing to clear, the run keeps its state (Airflow's too)
    marked = rota("mark", run_id, "--task", "clean", "--state", "failed", env=env)
    assert marked.code == 0, marked.err
    assert marked.out.strip().endswith(f"marked 1 task(s) of run {run_id} failed: clean")
    assert _latest(store, run_id) == {
        "fetch": (1, TaskState.SUCCESS), "clean": (2, TaskState.FAILED),
        "report": (1, TaskState.SUCCESS),
    }  # fmt: skip
    clean = max((a for a in store.attempts(run_id) if a.task_id == "clean"),
                key=lambda a: a.try_number)  # fmt: skip
    assert (clean.error_type, clean.started_at, clean.finished_at is not None) == (
        "MarkedFailed", None, True,
    )  # fmt: skip
    assert store.get_run(run_id).state is RunState.SUCCESS
    again = rota("mark", run_id, "--task", "clean", "--state", "failed", env=env)
    assert again.code == 0 and "none (already failed)" in again.out
    assert len(store.attempts(run_id)) == 4, "a task already in the state gets no attempt"

    # with --downstream, report is failed too, so (as in Airflow) it is cleared, not kept
    down = rota("mark", run_id, "--task", "fetch", "--state", "failed", "--downstream", env=env)
    assert down.code == 0, down.err
    assert f"failed: fetch; cleared clean, report: run `rota resume {run_id}`" in down.out
    latest = _latest(store, run_id)
    assert latest["fetch"] == (2, TaskState.FAILED)
    assert latest["clean"] == (3, TaskState.SCHEDULED)
    assert latest["report"] == (2, TaskState.SCHEDULED)
    assert store.get_run(run_id).state is RunState.QUEUED
    # a resume runs again whatever did not succeed, the task marked failed too
    resumed = rota("resume", run_id, "--json", env=env)
    assert resumed.code == 0 and resumed.json()["state"] == "success", resumed.err
    assert _latest(store, run_id)["fetch"] == (3, TaskState.SUCCESS)


def test_bad_marks_are_one_line_exit_2_and_store_nothing(
    rota: RotaCli, tmp_path: Path, write_flow: WriteFlow, store: SqlStore
) -> None:
    env = {"LEDGER": str(tmp_path / "ledger")}
    chain = rota("run", str(write_flow("chain.py", CHAIN)), "--json", env=env).json()["run_id"]
    mapped = rota("run", str(write_flow("mapped.py", MAPPED)), "--json").json()["run_id"]
    before = {r: len(store.attempts(r)) for r in (chain, mapped)}
    cases = [
        (("mark", chain, "--task", "nope", "--state", "success"), "has no task 'nope'"),
        (("mark", chain, "--task", "fetch", "--state", "running"), "'running' is not one of"),
        (("mark", mapped, "--task", "item", "--state", "success"), "task 'item' is mapped"),
        (("mark", "zzzz", "--task", "fetch", "--state", "success"), "zzzz"),
    ]
    for args, needle in cases:
        done = rota(*args, env=env)
        assert done.code == 2, (args, done.out, done.err)
        assert needle in done.err, (args, done.err)
        assert "Traceback" not in done.err
    assert {r: len(store.attempts(r)) for r in (chain, mapped)} == before
    assert store.get_run(chain).state is RunState.FAILED
