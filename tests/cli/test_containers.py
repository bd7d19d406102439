"""Container tasks run by a real podman through ``rota run``: output, exit codes, template safety,
timeouts and what a killed runner leaves (skipped with the reason when podman cannot run here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from clihelp import RotaCli, rota_env, wait_for

from fixtures_podman import BUSYBOX_IMAGE, busybox_image, containers_with, podman  # noqa: F401
from rota.store.sql import SqlStore
from storedvalues import stored_json

WriteFlow = Callable[[str, str], Path]

pytestmark = pytest.mark.usefixtures("busybox_image")

MIXED = """
from rota import ContainerTask, Flow, PythonTask

def shout(text):
    return text.upper() + "!"

with Flow("mixed", params={{"who": "world"}}) as mixed:
    write = ContainerTask(
        "write", "{image}",
        ["sh", "-c", 'echo "writing for $1"; echo "hello $1" > "$ROTA_OUTPUT"',
         "sh", "{{{{ params.who }}}}"],
    )
    PythonTask("read", shout, args=(write,))
"""


def _stored(home: Path, run_id: str, task: str) -> object:
    return stored_json(home, run_id, task)


def test_a_container_s_output_file_is_the_input_of_a_python_task(
    rota: RotaCli, write_flow: WriteFlow, home: Path
) -> None:
    path = write_flow("mixed.py", MIXED.format(image=BUSYBOX_IMAGE))
    result = rota("run", str(path), "-p", "who=rota", "--json")
    assert result.code == 0, result.err
    run_id = result.json()["run_id"]
    assert result.json()["tasks"]["write"]["state"] == "success"
    assert _stored(home, run_id, "write") == "hello rota"
    assert _stored(home, run_id, "read") == "HELLO ROTA!"
    log = rota("tasks", "logs", run_id, "write")
    assert "writing for rota" in log.out, log.out
    assert not list((home / "artifacts" / run_id).glob("*.container-output"))  # read, then gone
    assert containers_with(f"rota.run={run_id}") == []


SAFETY = """
from rota import ContainerTask, Flow

with Flow("safety", params={{"x": "$(touch pwned)"}}) as safety:
    common = dict(mounts={{"{work}": "/w"}}, workdir="/w")
    ContainerTask("argv", "{image}", ["echo", "{{{{ params.x }}}}"], **common)
    ContainerTask("split", "{image}", "echo {{{{ params.x }}}} `touch split-ran`", **common)
    ContainerTask(
        "shell", "{image}", "echo {{{{ params.x }}}}; touch shell-ran", shell=True, **common
    )
"""


def test_a_parameter_in_a_container_command_is_data_never_code(
    rota: RotaCli, write_flow: WriteFlow, home: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    path = write_flow("safety.py", SAFETY.format(image=BUSYBOX_IMAGE, work=work))
    result = rota("run", str(path), "--json")
    assert result.code == 0, result.err
    run_id = result.json()["run_id"]
    assert not (work / "pwned").exists()
    # the value reached the container as one argument, as text
    assert _stored(home, run_id, "argv") == "$(touch pwned)"
    assert _stored(home, run_id, "shell") == "$(touch pwned)"
    # without shell=True, the author's own backticks are text as well: no shell ran them
    assert _stored(home, run_id, "split") == "$(touch pwned) `touch split-ran`"
    assert not (work / "split-ran").exists()
    # with shell=True the author's text is shell code: the same folder shows what running is
    assert (work / "shell-ran").exists()


FAILING = """
from rota import ContainerTask, Flow

with Flow("failing") as failing:
    ContainerTask("fail", "{image}", ["sh", "-c", "echo before-exit; exit 3"])
"""


def test_a_container_s_exit_code_decides_the_task(
    rota: RotaCli, write_flow: WriteFlow, store: SqlStore
) -> None:
    path = write_flow("failing.py", FAILING.format(image=BUSYBOX_IMAGE))
    result = rota("run", str(path), "--json")
    assert result.code == 1, result.err
    run_id = result.json()["run_id"]
    (attempt,) = store.attempts(run_id)
    assert attempt.state == "failed"
    assert attempt.error_type == "ContainerFailed"
    assert attempt.error_message == f"container {BUSYBOX_IMAGE} exited with code 3"
    assert "before-exit" in rota("tasks", "logs", run_id, "fail").out


SLOW = """
from rota import ContainerTask, Flow

with Flow("slow") as slow:
    ContainerTask("nap", "{image}", ["sh", "-c", "echo napping; sleep 120"], timeout=1)
"""


@pytest.mark.parametrize("executor", ["local", "inprocess"])
def test_a_container_past_its_timeout_is_stopped_and_removed(
    rota: RotaCli, write_flow: WriteFlow, store: SqlStore, executor: str
) -> None:
    path = write_flow("slow.py", SLOW.format(image=BUSYBOX_IMAGE))
    result = rota("run", str(path), "--executor", executor, "--json")
    assert result.code == 1, result.err
    run_id = result.json()["run_id"]
    (attempt,) = store.attempts(run_id)
    assert attempt.state == "failed"
    assert attempt.error_type == "TaskTimeout", attempt.error_message
    assert containers_with(f"rota.run={run_id}") == []  # podman ps -a knows none of the run
    assert "napping" in rota("tasks", "logs", run_id, "nap").out


def _start_runner(home: Path, path: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rota", "run", str(path), "--json"],
        env=rota_env(home, ROTA_WORKERS="1"),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


HANGING = """
from rota import ContainerTask, Flow

with Flow("hanging") as hanging:
    ContainerTask("hang", "{image}", ["sleep", "300"])
"""


def test_a_sigkilled_runner_leaves_no_container_after_resume(
    rota: RotaCli, write_flow: WriteFlow, home: Path, tmp_path: Path
) -> None:
    path = write_flow("hanging.py", HANGING.format(image=BUSYBOX_IMAGE))
    runner = _start_runner(home, path, tmp_path)
    try:
        wait_for(lambda: bool(rota("runs", "list", "--json").json()), 60)
        run_id = rota("runs", "list", "--json").json()[0]["run_id"]
        wait_for(lambda: bool(containers_with(f"rota.run={run_id}")), 60)
        os.kill(runner.pid, signal.SIGKILL)
    finally:
        runner.kill()
        runner.communicate()
    # the worker sees its engine die and removes its container before it dies
    wait_for(lambda: containers_with(f"rota.run={run_id}") == [], 30)
    # a container a dead runner could not remove (its worker killed too): resume removes it
    left = podman(
        "run", "-d", "--label", "rota.managed=1", "--label", f"rota.run={run_id}",
        BUSYBOX_IMAGE, "sleep", "300",
    )  # fmt: skip
    assert left.returncode == 0, left.stderr
    assert len(containers_with(f"rota.run={run_id}")) == 1
    path.write_text(path.read_text().replace('["sleep", "300"]', '["echo", "done"]'))
    resumed = rota("resume", run_id, "--json")
    assert resumed.code == 0, resumed.err
    assert containers_with(f"rota.run={run_id}") == []


def test_a_cancelled_run_leaves_no_container(
    rota: RotaCli, write_flow: WriteFlow, home: Path, tmp_path: Path
) -> None:
    path = write_flow("hanging.py", HANGING.format(image=BUSYBOX_IMAGE))
    runner = _start_runner(home, path, tmp_path)
    try:
        wait_for(lambda: bool(rota("runs", "list", "--json").json()), 60)
        run_id = rota("runs", "list", "--json").json()[0]["run_id"]
        wait_for(lambda: bool(containers_with(f"rota.run={run_id}")), 60)
        cancelled = rota("runs", "cancel", run_id)
        assert cancelled.code == 0, cancelled.err
        runner.communicate(timeout=120)
    finally:
        runner.kill()
        runner.communicate()
    shown = rota("runs", "show", run_id, "--json").json()
    assert shown["state"] == "failed" and shown["tasks"]["hang"]["state"] == "failed"
    wait_for(lambda: containers_with(f"rota.run={run_id}") == [], 30)
