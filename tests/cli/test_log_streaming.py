"""What a task prints is in its log whatever ends the attempt, under every executor.

Each attempt's log is written while the attempt runs. These tests end attempts the hard ways,
through real ``rota run`` subprocesses: a timeout, a SIGKILL of the worker process, a SIGKILL of
the runner, and Ctrl-C (SIGINT); then ``rota tasks logs`` shows the lines the task printed before
it was ended. Before logs were streamed, each of these said ``printed nothing``: process workers
kept the output in a scratch file that became the log only when the attempt ended normally, and
thread workers kept it in memory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clihelp import RotaCli, rota_env, wait_for

from rota.model.states import RunState, TaskState
from rota.store.base import AttemptRecord
from rota.store.sql import SqlStore

WriteFlow = Callable[[str, str], Path]

FLOW = """
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from rota import Flow, PythonSensor, PythonTask, ShellTask

MARKS = Path(os.environ["MARKS"])
LIMIT = timedelta(seconds=float(os.environ.get("LIMIT", "600")))


def talk_then_hang() -> None:
    print("line one", flush=True)
    print("line two")  # ended by a newline, not flushed by hand
    (MARKS / "pid").write_text(str(os.getpid()))
    time.sleep(600)


def half_a_line_then_hang() -> None:
    print("line one")
    sys.stdout.write("no end yet")  # flushed, but no newline: the log holds it back
    sys.stdout.flush()
    time.sleep(600)


def count_pokes() -> bool:
    seen = MARKS / "pokes"
    n = int(seen.read_text()) + 1 if seen.exists() else 1
    seen.write_text(str(n))
    print(f"poke {n}")
    return n >= 3


with Flow("python_hang") as python_hang:
    PythonTask("hang", talk_then_hang, timeout=LIMIT)

with Flow("half_line") as half_line:
    PythonTask("hang", half_a_line_then_hang, timeout=LIMIT)

with Flow("shell_hang") as shell_hang:
    ShellTask(
        "hang",
        "echo line one; echo line two; echo $$ > \\"$MARKS/pid\\"; sleep 600",
        timeout=LIMIT,
    )

with Flow("pokes") as pokes:
    PythonSensor("wait", count_pokes, mode="reschedule", poke_interval=0.2)
"""

EXECUTORS = ["local", "threads", "inprocess"]


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    path = tmp_path / "marks"
    path.mkdir()
    return path


@pytest.fixture
def flow_file(write_flow: WriteFlow) -> Path:
    return write_flow("hangs.py", FLOW)


def start_run(
    home: Path, target: str, marks: Path, executor: str, **env: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "rota", "run", target, "--executor", executor],
        env=rota_env(home, ROTA_WORKERS="1", MARKS=str(marks), **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def runs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def the_attempt(store: SqlStore) -> AttemptRecord:
    (run,) = store.list_runs()
    (rec,) = [a for a in store.attempts(run.run_id) if a.task_id == "hang"]
    return rec


def running_and_printed(store: SqlStore, marks: Path) -> Callable[[], bool]:
    """The attempt is running, the store names its log, and the task has printed both lines."""

    def check() -> bool:
        if not store.list_runs() or not (marks / "pid").exists():
            return False
        rec = the_attempt(store)
        if rec.state is not TaskState.RUNNING or rec.log_path is None:
            return False
        return printed_lines(Path(rec.log_path).read_text()) == LINES

    return check


def shown_log(rota: RotaCli, store: SqlStore) -> str:
    (run,) = store.list_runs()
    shown = rota("tasks", "logs", run.run_id, "hang")
    assert shown.code == 0, shown
    return shown.out


LINES = ["line one", "line two"]


def printed_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line in LINES]


@pytest.mark.parametrize(
    ("flow", "executor"),
    [("python_hang", "local"), ("shell_hang", "local"), ("shell_hang", "threads"),
     ("shell_hang", "inprocess")],
)  # fmt: skip
def test_what_a_task_printed_before_its_timeout_is_in_its_log(
    home: Path, flow_file: Path, marks: Path, store: SqlStore, rota: RotaCli,
    flow: str, executor: str,
) -> None:  # fmt: skip
    result = rota(
        "run", f"{flow_file}:{flow}", "--executor", executor,
        env={"MARKS": str(marks), "LIMIT": "2", "ROTA_WORKERS": "1"},
    )  # fmt: skip
    assert result.code == 1, result
    rec = the_attempt(store)
    assert rec.state is TaskState.FAILED and rec.error_type == "TaskTimeout"
    assert printed_lines(shown_log(rota, store)) == LINES


def test_a_line_not_yet_ended_when_the_timeout_strikes_is_kept(
    flow_file: Path, marks: Path, store: SqlStore, rota: RotaCli
) -> None:
    # the worker is sent SIGTERM at the deadline: it writes what it held back, then dies
    result = rota(
        "run", f"{flow_file}:half_line", "--executor", "local",
        env={"MARKS": str(marks), "LIMIT": "2", "ROTA_WORKERS": "1"},
    )  # fmt: skip
    assert result.code == 1, result
    assert the_attempt(store).error_type == "TaskTimeout"
    assert shown_log(rota, store) == "line one\nno end yet"


def test_what_a_task_printed_before_its_worker_was_killed_is_in_its_log(
    home: Path, flow_file: Path, marks: Path, store: SqlStore, rota: RotaCli,
    runs: list[subprocess.Popen[bytes]],
) -> None:  # fmt: skip
    proc = start_run(home, f"{flow_file}:python_hang", marks, "local")
    runs.append(proc)
    wait_for(running_and_printed(store, marks), timeout=60)
    os.kill(int((marks / "pid").read_text()), signal.SIGKILL)
    assert proc.wait(timeout=60) == 1
    rec = the_attempt(store)
    assert rec.state is TaskState.FAILED and rec.error_type == "WorkerLost"
    assert printed_lines(shown_log(rota, store)) == LINES


@pytest.mark.parametrize("executor", EXECUTORS)
def test_what_a_task_printed_before_its_runner_was_killed_is_in_its_log(
    home: Path, flow_file: Path, marks: Path, store: SqlStore, rota: RotaCli,
    runs: list[subprocess.Popen[bytes]], executor: str,
) -> None:  # fmt: skip
    proc = start_run(home, f"{flow_file}:python_hang", marks, executor)
    runs.append(proc)
    wait_for(running_and_printed(store, marks), timeout=60)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert the_attempt(store).state is TaskState.RUNNING  # nobody could record its end
    assert printed_lines(shown_log(rota, store)) == LINES


@pytest.mark.parametrize("executor", EXECUTORS)
def test_what_a_task_printed_before_ctrl_c_is_in_its_log(
    home: Path, flow_file: Path, marks: Path, store: SqlStore, rota: RotaCli,
    runs: list[subprocess.Popen[bytes]], executor: str,
) -> None:  # fmt: skip
    proc = start_run(home, f"{flow_file}:python_hang", marks, executor)
    runs.append(proc)
    wait_for(running_and_printed(store, marks), timeout=60)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    (run,) = store.list_runs()
    assert run.state is RunState.INTERRUPTED
    assert the_attempt(store).state is TaskState.INTERRUPTED
    assert printed_lines(shown_log(rota, store)) == LINES


@pytest.mark.parametrize("executor", EXECUTORS)
def test_each_poke_of_a_rescheduled_sensor_adds_to_one_log(
    flow_file: Path, marks: Path, store: SqlStore, rota: RotaCli, executor: str
) -> None:
    result = rota(
        "run", f"{flow_file}:pokes", "--executor", executor, env={"MARKS": str(marks)}
    )  # fmt: skip
    assert result.code == 0, result
    (run,) = store.list_runs()
    (rec,) = store.attempts(run.run_id)
    assert rec.state is TaskState.SUCCESS and rec.pokes == 2 and rec.try_number == 1
    shown = rota("tasks", "logs", run.run_id, "wait")
    ours = [line for line in shown.out.splitlines() if line.startswith("poke ")]
    assert ours == ["poke 1", "poke 2", "poke 3"], shown
    assert shown.out.count("[rota] poke ") == 3  # the sensor's own line for each, in the one log
