"""Defects the crash tests found, each shown by a small deterministic scenario."""

from __future__ import annotations

import re
import time
from pathlib import Path

from faultharness import TASK_COUNT, Harness

BUDGET = """
import os
import time
from pathlib import Path

from rota import flow, task

LEDGER = Path(os.environ["ROTA_TEST_LEDGER"])


@task
def slow():
    time.sleep(1.5)  # the runner is killed meanwhile
    return 1


@task(retries=1)
def flaky():
    first = not LEDGER.exists()
    with LEDGER.open("a") as fh:
        fh.write("flaky\\n")
    if first:
        raise RuntimeError("fails the first time it really runs")
    return 2


@flow
def budget():
    slow(task_id="slow")
    flaky(task_id="flaky")
"""


class SetupFailed(Exception):
    """The scenario did not reach the state the test is about (its set-up failed)."""


def _require(condition: object, message: object) -> None:
    if not condition:
        raise SetupFailed(message)


def _attempt_states(h: Harness, run_id: str) -> dict[str, str]:
    return {a["task_id"]: a["state"] for a in h.attempts(run_id)}


def test_crash_does_not_use_up_the_retries_of_a_task_that_never_started(tmp_path: Path) -> None:
    h = Harness(tmp_path, flow_name="budget", workers=1)  # one worker: flaky waits, queued
    h.flow.write_text(BUDGET)
    launched = h.launch(*h.run_args())
    deadline = time.monotonic() + 30
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        runs = h.runs()
        if runs:
            states = _attempt_states(h, next(iter(runs)))
            if states == {"slow": "running", "flaky": "queued"}:
                break
        time.sleep(0.01)
    _require(states == {"slow": "running", "flaky": "queued"}, states)
    report = h.kill(launched)
    _require(report.killed and not report.survivors, report)
    _require(not h.ledger.exists(), "flaky ran before the kill")
    result = h.cli(*h.resume_args())
    _require(result.code in (0, 1), result)
    (run_id,) = h.runs()
    tries = [(a["try_number"], a["state"]) for a in h.attempts(run_id) if a["task_id"] == "flaky"]
    # flaky really ran once and failed: retries=1 allows one more attempt, which succeeds
    assert result.code == 0, f"{tries}\n{result.err[-2000:]}"
    assert h.ledger.read_text().count("flaky") == 2


def test_resume_announces_every_task_it_runs(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    first = h.cli(*h.run_args(), fault_points="run_created:1")
    _require(first.code == -9, first)
    result = h.cli(*h.resume_args())
    _require(result.code == 0, result.err)
    ran = sum(t["attempts"] for t in result.json()["tasks"].values())
    _require(ran == TASK_COUNT, ran)
    announced = re.search(r"(\d+) task\(s\) to run", result.err)
    _require(announced is not None, result.err)
    assert announced is not None
    assert int(announced.group(1)) == TASK_COUNT, result.err.splitlines()[0]
