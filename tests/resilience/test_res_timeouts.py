"""Timeouts under the ``local`` executor: stuck tasks of every kind are ended by their timeout
(never before it) and leave no process behind, checked through the process table (/proc).

Each task records the pids it creates in files; shell sleeps carry unique arguments so that any
survivor can also be found by its command line. A zombie (state Z) counts as dead: nothing reaps
orphans in this container.
"""

from __future__ import annotations

import random
import textwrap
import time
from pathlib import Path

import pytest
from reshelp import alive, attempts_of, kill_leftovers, live_pids_with, run_cli

from rota.engine.loader import resolve_target
from rota.engine.runner import FlowRef, Runner
from rota.executors.pool import LocalPoolExecutor
from rota.model.schedule import SystemClock
from rota.model.states import RunState, TaskState
from rota.store.sql import open_store

TIMEOUT = 2.0

STUCK = """
import os, signal, socket, time
from pathlib import Path
from rota import Flow, PythonTask, ShellTask

PIDS = Path(os.environ["PID_DIR"])
T = float(os.environ["TASK_TIMEOUT"])


def record(name: str, pid: int) -> None:
    (PIDS / f"{name}.pid").write_text(str(pid))


def sleeper() -> None:
    record("sleeper", os.getpid())
    time.sleep(300)


def reader() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    record("reader", os.getpid())
    client.recv(1)  # the server never writes: a blocking read that never returns


def stubborn() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    record("stubborn", os.getpid())
    while True:
        time.sleep(0.1)


SHELL = (
    'echo $$ > "$PID_DIR/shell.pid"; '
    'sleep 3017$SLEEP_TAG & echo $! > "$PID_DIR/grandchild.pid"; '
    "sleep 3018$SLEEP_TAG"
)

with Flow("stuck") as stuck:
    PythonTask("sleeper", sleeper, timeout=T)
    PythonTask("reader", reader, timeout=T)
    PythonTask("stubborn", stubborn, timeout=T)
    ShellTask("shell", SHELL, timeout=T)
    PythonTask("fine", lambda: "quick", timeout=T)
"""

# Every sleep a test starts ends in this session's SLEEP_TAG, so that survivors are found by their
# command line without mistaking those of another test session running at the same time.
TAG = str(random.randrange(10**6, 10**7))
MARKERS = tuple(f"sleep {n}{TAG}" for n in ("3017", "3018", "3019"))


def run_stuck_flow(
    tmp_path: Path, source: str, name: str, driver: str = "cli"
) -> tuple[dict[str, int], str, Path]:
    """Run the flow in *source* under the local executor with 5 workers, through the CLI (a
    subprocess) or an in-process Runner; return the recorded pids, the run id and ROTA_HOME."""
    home = tmp_path / "home"
    home.mkdir()
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    flow_file = tmp_path / f"{name}.py"
    flow_file.write_text(textwrap.dedent(source))
    env = {
        "PID_DIR": str(pid_dir),
        "TASK_TIMEOUT": str(TIMEOUT),
        "ROTA_WORKERS": "5",
        "SLEEP_TAG": TAG,
    }
    if driver == "cli":
        result = run_cli(
            home, tmp_path, "run", str(flow_file), "--executor", "local", "--json", env=env
        )
        assert result.code == 1, result.err
        run_id = result.json()["run_id"]
    else:
        run_id = run_in_process(home, flow_file, env)
    pids = {p.stem: int(p.read_text()) for p in pid_dir.glob("*.pid")}
    return pids, run_id, home


def run_in_process(home: Path, flow_file: Path, env: dict[str, str]) -> str:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        loaded = resolve_target(str(flow_file))
        dag = loaded.build()
        store = open_store(f"sqlite:///{home / 'rota.db'}")
        ex = LocalPoolExecutor(5, str(home / "logs"))
        try:
            summary = Runner(store, ex, home=home, clock=SystemClock()).run(dag, loaded.ref)
        finally:
            ex.close()
            store.close()
    assert summary.state is RunState.FAILED
    return summary.run_id


DRIVERS = pytest.mark.parametrize("driver", ["cli", "runner"])


@DRIVERS
def test_stuck_tasks_are_ended_by_their_timeout_leaving_no_process(
    tmp_path: Path, driver: str
) -> None:
    pids, run_id, home = run_stuck_flow(tmp_path, STUCK, "stuck", driver)
    try:
        assert set(pids) == {"sleeper", "reader", "stubborn", "shell", "grandchild"}
        rows = {a.task_id: a for a in attempts_of(home, run_id)}
        assert rows["fine"].state is TaskState.SUCCESS
        for tid in ("sleeper", "reader", "stubborn", "shell"):
            a = rows[tid]
            assert a.state is TaskState.FAILED, tid
            assert a.error_type == "TaskTimeout", (tid, a.error_type, a.error_message)
            assert a.started_at is not None and a.finished_at is not None
            # never before its time; how soon after is the benchmarks' business, not a test's
            assert (a.finished_at - a.started_at).total_seconds() >= TIMEOUT, tid
        # the process table: none of the recorded pids is alive, nor any marked sleep
        survivors = {name: pid for name, pid in pids.items() if alive(pid)}
        assert survivors == {}
        for marker in MARKERS:
            assert live_pids_with(marker) == [], marker
    finally:
        kill_leftovers([p for p in pids.values() if alive(p)])
        for marker in MARKERS:
            kill_leftovers(live_pids_with(marker))


TERM_PROOF_SHELL = """
import os
from rota import Flow, ShellTask

T = float(os.environ["TASK_TIMEOUT"])

# The grandchild ignores SIGTERM; the shell does not.
SHELL = (
    'echo $$ > "$PID_DIR/shell.pid"; '
    "bash -c 'trap \\"\\" TERM; echo $$ > \\"$PID_DIR/grandchild.pid\\"; sleep 3019$SLEEP_TAG; :' "
    + os.environ.get("REDIRECT", "")
    + " & "
    "sleep 3018$SLEEP_TAG"
)

with Flow("termproof") as termproof:
    ShellTask("shell", SHELL, timeout=T)
"""

TERM_PROOF_CHILD = """
import os, subprocess, time
from pathlib import Path
from rota import Flow, PythonTask

T = float(os.environ["TASK_TIMEOUT"])
PIDS = Path(os.environ["PID_DIR"])


def spawner() -> None:
    child = subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 3019$SLEEP_TAG; :"])
    (PIDS / "child.pid").write_text(str(child.pid))
    (PIDS / "task.pid").write_text(str(os.getpid()))
    time.sleep(300)


with Flow("termproof2") as termproof2:
    PythonTask("spawner", spawner, timeout=T)
"""


def check_term_proof(
    tmp_path: Path, source: str, name: str, tid: str, names: set[str], driver: str = "cli"
) -> None:
    pids, run_id, home = run_stuck_flow(tmp_path, source, name, driver)
    try:
        assert set(pids) == names
        (a,) = attempts_of(home, run_id, tid)
        assert a.error_type == "TaskTimeout"
        assert a.started_at is not None and a.finished_at is not None
        assert (a.finished_at - a.started_at).total_seconds() >= TIMEOUT
        time.sleep(3.0)  # past the executor's SIGKILL grace period (2 s), to be fair
        survivors = {n: pid for n, pid in pids.items() if alive(pid)}
        assert survivors == {}, "a SIGTERM-proof descendant outlived its timed-out task"
        assert live_pids_with(f"sleep 3019{TAG}") == []
    finally:
        kill_leftovers([p for p in pids.values() if alive(p)])
        for marker in MARKERS:
            kill_leftovers(live_pids_with(marker))


# A descendant that ignores SIGTERM must get the SIGKILL that follows, whether the worker dies at
# the SIGTERM (it resets the handler it inherits from the CLI) or lingers, and whether or not the
# descendant holds the task's stdout pipe (a daemon's usual >/dev/null does not). Before the fix in
# 757eaf5 the SIGKILL was dropped once the worker had died of the SIGTERM.
@pytest.mark.parametrize(
    ("driver", "redirect"),
    [
        ("cli", ""),
        pytest.param("runner", ""),
        pytest.param("cli", ">/dev/null 2>&1"),
    ],
    ids=["cli", "runner", "cli-output-redirected"],
)
def test_a_shell_grandchild_ignoring_sigterm_is_killed_too(
    tmp_path: Path, driver: str, redirect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIRECT", redirect)
    names = {"shell", "grandchild"}
    check_term_proof(tmp_path, TERM_PROOF_SHELL, "termproof", "shell", names, driver)


@DRIVERS
def test_a_python_tasks_child_ignoring_sigterm_is_killed_too(tmp_path: Path, driver: str) -> None:
    names = {"task", "child"}
    check_term_proof(tmp_path, TERM_PROOF_CHILD, "termproof2", "spawner", names, driver)


# --- shell tasks under the in-process executors enforce their own deadline ---------------------


@pytest.mark.parametrize("kind", ["threads", "inprocess"])
def test_shell_timeouts_under_thread_executors_leave_no_process(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rota import Flow, ShellTask
    from rota.executors.base import Executor
    from rota.executors.threads import InProcessExecutor, ThreadExecutor

    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    monkeypatch.setenv("PID_DIR", str(pid_dir))
    monkeypatch.setenv("SLEEP_TAG", TAG)
    with Flow("shell_timeouts") as f:
        ShellTask(
            "grandchild",
            'echo $$ > "$PID_DIR/g_shell.pid"; '
            'sleep 3021$SLEEP_TAG & echo $! > "$PID_DIR/g_child.pid"; '
            "sleep 3022$SLEEP_TAG",
            timeout=TIMEOUT,
        )
        ShellTask(
            "term_proof",
            'echo $$ > "$PID_DIR/t_shell.pid"; '
            'bash -c \'trap "" TERM; echo $$ > "$PID_DIR/t_child.pid"; sleep 3023$SLEEP_TAG; :\' '
            ">/dev/null 2>&1 & sleep 3024$SLEEP_TAG",
            timeout=TIMEOUT,
        )
        ShellTask("quick", "echo done", timeout=TIMEOUT)
    markers = tuple(f"sleep {n}{TAG}" for n in ("3021", "3022", "3023", "3024"))
    ex: Executor = ThreadExecutor(3) if kind == "threads" else InProcessExecutor()
    store = open_store(f"sqlite:///{tmp_path / 'rota.db'}")
    pids: dict[str, int] = {}
    try:
        summary = Runner(store, ex, home=tmp_path, clock=SystemClock()).run(
            f.build(), FlowRef("shell_timeouts")
        )
        pids = {p.stem: int(p.read_text()) for p in pid_dir.glob("*.pid")}
        assert set(pids) == {"g_shell", "g_child", "t_shell", "t_child"}
        assert summary.tasks["quick"].state is TaskState.SUCCESS
        for tid in ("grandchild", "term_proof"):
            a = summary.tasks[tid].latest
            assert a.state is TaskState.FAILED and a.error_type == "TaskTimeout", tid
            assert a.started_at is not None and a.finished_at is not None
            assert (a.finished_at - a.started_at).total_seconds() >= TIMEOUT
        assert {n: p for n, p in pids.items() if alive(p)} == {}
        for marker in markers:
            assert live_pids_with(marker) == [], marker
    finally:
        ex.close()
        store.close()
        kill_leftovers([p for p in pids.values() if alive(p)])
        for marker in markers:
            kill_leftovers(live_pids_with(marker))
