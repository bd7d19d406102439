"""``rota run`` and ``rota runs show`` on issue 10's semantics: a run whose failure a fallback
leaf handled succeeds and names the failure; skips say why; the progress line shows waits; a
branch choosing a task it cannot fails naming the valid ids."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from clihelp import RotaCli

HANDLED = """
from rota import Flow, PythonTask

def ok():
    return "ok"

def boom():
    raise RuntimeError("the model did not converge")

with Flow("handled") as f:
    train = PythonTask("train", boom)
    train >> PythonTask("cleanup", ok, trigger_rule="one_failed")
"""
WITH_REPORT = (
    HANDLED
    + """    train >> PythonTask("report", ok, trigger_rule="none_failed")
"""
)


def test_a_handled_failure_succeeds_and_is_named(
    rota: RotaCli, write_flow: Callable[[str, str], Path]
) -> None:
    """Airflow: the only leaf, cleanup (one_failed), succeeded, so the run succeeds; the failed
    train is still named, in the summary and in --json."""
    path = write_flow("handled.py", HANDLED)
    handled = rota("run", str(path))
    assert handled.code == 0, handled.err
    assert "train (attempt 1): RuntimeError: the model did not converge" in handled.err
    assert (
        "run succeeded with 1 failed task(s): train; every leaf task succeeded or was skipped"
        in " ".join(handled.err.split())
    )
    as_json = rota("run", str(path), "--json")
    assert as_json.code == 0 and as_json.json()["state"] == "success"
    assert as_json.json()["failed_tasks"] == ["train"]


def test_a_leaf_upstream_failed_fails_the_run(
    rota: RotaCli, write_flow: Callable[[str, str], Path]
) -> None:
    """Airflow: leaf report (none_failed) is upstream_failed, a failed state: the run fails."""
    failed = rota("run", str(write_flow("with_report.py", WITH_REPORT)), "--json")
    assert failed.code == 1, failed.err
    summary = failed.json()
    assert summary["state"] == "failed"
    assert summary["failed_tasks"] == ["train"]
    assert summary["tasks"]["report"]["reason"] == (
        "trigger rule none_failed: 1 of 1 upstreams ended: 1 failed"
    )


RETRYING = """
from datetime import timedelta
from rota import Flow, PythonTask, RetryPolicy

def flaky(ctx):
    if ctx.try_number == 1:
        raise RuntimeError("first try")
    return "ok"

with Flow("retrying") as f:
    PythonTask("flaky", flaky, retries=RetryPolicy(max_attempts=2, delay=timedelta(seconds=3)))
"""


def test_the_progress_line_shows_a_retry_back_off(
    rota: RotaCli, write_flow: Callable[[str, str], Path]
) -> None:
    result = rota("run", str(write_flow("retrying.py", RETRYING)))
    assert result.code == 0, result.err
    lines = [ln for ln in result.err.splitlines() if "retrying in" in ln]
    assert len(lines) == 1, result.err  # said once, when the wait begins
    assert re.fullmatch(r"\[\S+\] flaky retrying in [1-3] s", lines[0]), lines


BAD_BRANCH = """
from rota import BranchTask, Flow, PythonTask

def ok():
    return "ok"

with Flow("bad_branch") as f:
    pick = BranchTask("pick", lambda: "nowhere")
    pick >> [PythonTask("left", ok), PythonTask("right", ok)]
"""


def test_a_branch_choosing_an_unknown_task_fails_naming_the_valid_ids(
    rota: RotaCli, write_flow: Callable[[str, str], Path]
) -> None:
    result = rota("run", str(write_flow("bad_branch.py", BAD_BRANCH)))
    assert result.code == 1
    assert (
        "pick (attempt 1): BranchError: branch task 'pick' chose 'nowhere', not among its direct "
        "downstream tasks (valid ids: 'left', 'right')" in " ".join(result.err.split())
    )
    assert "Traceback" not in result.err


BRANCHING = """
from rota import flow, task

@task.branch
def pick():
    return ["left"]

@task
def left():
    return 1

@task
def right():
    return 2

@flow
def branching():
    pick() >> [left(), right()]
"""


def test_runs_show_says_why_a_task_was_skipped(
    rota: RotaCli, write_flow: Callable[[str, str], Path]
) -> None:
    done = rota("run", str(write_flow("branching.py", BRANCHING)), "--json")
    assert done.code == 0, done.err
    shown = rota("runs", "show", done.json()["run_id"])
    assert shown.code == 0, shown.err
    assert "right skipped: not chosen by branch task 'pick' (it chose 'left')" in " ".join(
        shown.out.split()
    )
