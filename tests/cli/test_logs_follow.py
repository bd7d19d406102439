"""``rota tasks logs RUN TASK -f`` follows a running attempt: it prints each line as the task
prints it, and ends when the attempt ends (or when its runner dies).

Real subprocesses throughout: a ``rota run`` whose task prints, waits for a file the test creates,
and prints again; a follower started while the task waits. The order of events shows the
streaming: the follower has printed the first line before the file that lets the task print the
second exists. Nothing here bounds how long anything takes.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clihelp import RotaCli, rota_env, wait_for

from rota.model.states import TaskState
from rota.store.base import AttemptRecord
from rota.store.sql import SqlStore

WriteFlow = Callable[[str, str], Path]

FLOW = """
import os
import time
from pathlib import Path

from rota import flow, task

MARKS = Path(os.environ["MARKS"])


@task
def talk() -> int:
    print("first", flush=True)
    (MARKS / "waiting").write_text("")
    while not (MARKS / "go").exists():
        time.sleep(0.05)
    print("second \\x1b[31mred\\x1b[0m", flush=True)
    return 2


@flow
def talks():
    talk()
"""

WAIT = 60.0
"""Seconds to wait for something that should happen (a deadline, not a measurement)."""


class Lines:
    """A subprocess's stdout, read line by line in a thread (so a read can wait with a deadline)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._lines.put(line)
        self._lines.put("")  # end of file

    def next(self) -> str:
        return self._lines.get(timeout=WAIT)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def start(
    procs: list[subprocess.Popen[str]], home: Path, marks: Path, *args: str
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rota", *args],
        env=rota_env(home, ROTA_WORKERS="1", MARKS=str(marks)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    return proc


def talk_attempt(store: SqlStore) -> AttemptRecord | None:
    runs = store.list_runs()
    if not runs:
        return None
    found = [a for a in store.attempts(runs[0].run_id) if a.task_id == "talk"]
    return found[0] if found else None


def waiting_task(store: SqlStore, marks: Path) -> AttemptRecord:
    """Wait until the task has printed its first line and waits for the go file."""

    def ready() -> bool:
        rec = talk_attempt(store)
        return bool(rec and rec.log_path and (marks / "waiting").exists())

    wait_for(ready, timeout=WAIT)
    rec = talk_attempt(store)
    assert rec is not None and rec.state is TaskState.RUNNING
    return rec


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    path = tmp_path / "marks"
    path.mkdir()
    return path


@pytest.mark.parametrize("executor", ["local", "threads", "inprocess"])
def test_follow_prints_each_line_as_it_is_printed_and_ends_with_the_attempt(
    home: Path, write_flow: WriteFlow, store: SqlStore, marks: Path,
    procs: list[subprocess.Popen[str]], executor: str,
) -> None:  # fmt: skip
    path = write_flow("talks.py", FLOW)
    run = start(procs, home, marks, "run", str(path), "--executor", executor)
    rec = waiting_task(store, marks)
    follower = start(procs, home, marks, "tasks", "logs", rec.run_id, "talk", "-f")
    lines = Lines(follower)
    assert lines.next() == "first\n"
    assert not (marks / "go").exists()  # printed while the task still waits
    (marks / "go").write_text("")
    assert lines.next() == "second \\x1b[31mred\\x1b[0m\n"  # escapes, as without -f
    assert lines.next() == ""  # the attempt ended, and so did the follower
    assert follower.wait(timeout=WAIT) == 0
    assert follower.stderr is not None
    assert follower.stderr.read() == "(attempt 1 of talk: success)\n"
    assert run.wait(timeout=WAIT) == 0


def test_follow_of_an_ended_attempt_prints_its_log_and_ends(
    home: Path, write_flow: WriteFlow, store: SqlStore, marks: Path, rota: RotaCli
) -> None:
    path = write_flow("talks.py", FLOW)
    (marks / "go").write_text("")
    assert rota("run", str(path), env={"MARKS": str(marks)}).code == 0
    rec = talk_attempt(store)
    assert rec is not None
    shown = rota("tasks", "logs", rec.run_id, "talk", "-f", "--raw", env={"MARKS": str(marks)})
    assert shown.code == 0
    assert shown.out == "first\nsecond \x1b[31mred\x1b[0m\n"  # --raw: the bytes as printed
    assert shown.err == "(attempt 1 of talk: success)\n"


def test_follow_ends_when_the_runner_dies(
    home: Path, write_flow: WriteFlow, store: SqlStore, marks: Path,
    procs: list[subprocess.Popen[str]],
) -> None:  # fmt: skip
    path = write_flow("talks.py", FLOW)
    run = start(procs, home, marks, "run", str(path))
    rec = waiting_task(store, marks)
    follower = start(procs, home, marks, "tasks", "logs", rec.run_id, "talk", "-f")
    lines = Lines(follower)
    assert lines.next() == "first\n"
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=WAIT)
    assert lines.next() == ""  # the follower saw the runner gone
    assert follower.wait(timeout=WAIT) == 0
    assert follower.stderr is not None
    note = follower.stderr.read()
    assert note.startswith("(attempt 1 of talk: running, but its runner is gone"), note
    assert not (marks / "go").exists()


def test_follow_of_an_unknown_task_is_a_one_line_error(
    home: Path, write_flow: WriteFlow, store: SqlStore, marks: Path, rota: RotaCli
) -> None:
    path = write_flow("talks.py", FLOW)
    (marks / "go").write_text("")
    assert rota("run", str(path), env={"MARKS": str(marks)}).code == 0
    rec = talk_attempt(store)
    assert rec is not None
    for task, said in (
        ("nope", f"run {rec.run_id} has no task 'nope' (its tasks: talk)"),
        ("talk@x", "not a task or instance: 'talk@x' (write TASK, TASK[N] or TASK@N)"),
        ("talk@0", f"task 'talk' of run {rec.run_id} has no instance 0 (it is not mapped)"),
    ):
        shown = rota("tasks", "logs", rec.run_id, task, "-f")
        assert shown.code == 2 and shown.out == ""
        assert shown.err == f"rota: error: {said}\n"
