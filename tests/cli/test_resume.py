"""``rota resume`` and ``rota clear`` end to end: only what must run again runs again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from clihelp import RotaCli

CHAIN = """
import os
from pathlib import Path
from rota import flow, task

LEDGER = Path(os.environ["LEDGER"])


def mark(name: str) -> None:
    with LEDGER.open("a") as fh:
        fh.write(name + "\\n")


@task
def t1() -> int:
    mark("t1")
    return 1


@task
def t2(x: int) -> int:
    mark("t2")
    return x + 1


@task
def t3(x: int) -> int:
    mark("t3")
    return x + 1


@task
def t4(x: int) -> int:
    mark("t4")
    if Path(os.environ["LEDGER"] + ".fail").exists():
        raise RuntimeError("t4 is broken")
    return x + 1


@task
def t5(x: int) -> int:
    mark("t5")
    return x + 1


@flow
def chain():
    t5(t4(t3(t2(t1()))))
"""


def _ledger(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_resume_after_an_edit_reruns_the_changed_task_and_its_cone(
    rota: RotaCli, tmp_path: Path, write_flow: Callable[[str, str], Path]
) -> None:
    ledger = tmp_path / "ledger"
    env = {"LEDGER": str(ledger)}
    Path(f"{ledger}.fail").touch()
    path = write_flow("chain.py", CHAIN)
    first = rota("run", str(path), "--json", env=env)
    assert first.code == 1
    assert first.json()["tasks"]["t4"]["state"] == "failed"
    assert _ledger(ledger) == ["t1", "t2", "t3", "t4"]
    # fix t4's cause, and edit t2's code
    Path(f"{ledger}.fail").unlink()
    path.write_text(
        path.read_text().replace('mark("t2")\n    return x + 1', 'mark("t2")\n    return x + 2')
    )
    ledger.unlink()
    resumed = rota("resume", first.json()["run_id"], "--json", env=env)
    assert resumed.code == 0, resumed.err
    assert _ledger(ledger) == ["t2", "t3", "t4", "t5"], "t1 must keep its stored output"
    assert "t2: code changed since its success in try 1" in resumed.err
    assert "t3: downstream of t2, whose code changed" in resumed.err
    summary = resumed.json()
    assert summary["state"] == "success"
    assert summary["tasks"]["t1"]["attempts"] == 1
    assert summary["tasks"]["t2"]["attempts"] == 2


def test_clear_then_resume_reruns_only_the_cleared_cone(
    rota: RotaCli, tmp_path: Path, write_flow: Callable[[str, str], Path]
) -> None:
    ledger = tmp_path / "ledger"
    env = {"LEDGER": str(ledger)}
    path = write_flow("chain.py", CHAIN)
    run_id = rota("run", str(path), "--json", env=env).json()["run_id"]
    again = rota("resume", run_id, env=env)
    assert again.code == 2 and "succeeded; nothing to resume" in again.err
    cleared = rota("clear", run_id, "--task", "t3", "--downstream", env=env)
    assert cleared.code == 0, cleared.err
    assert "t3, t4, t5" in cleared.out
    assert rota("runs", "show", run_id, "--json").json()["state"] == "queued"
    ledger.unlink()
    resumed = rota("resume", run_id, "--json", env=env)
    assert resumed.code == 0, resumed.err
    assert _ledger(ledger) == ["t3", "t4", "t5"]
    unknown = rota("clear", run_id, "--task", "nope", env=env)
    assert unknown.code == 2 and "no task 'nope'" in unknown.err


SERIAL = """
import os
import time
from pathlib import Path
from rota import Flow, PythonTask

LEDGER = Path(os.environ["LEDGER"])


def nap(i: int) -> int:
    with LEDGER.open("a") as fh:
        fh.write(f"nap{i}\\n")
    gate = os.environ.get("GATE")
    if gate and i >= 2:  # the later tasks wait for the test to open the gate
        while not Path(gate).exists():
            time.sleep(0.05)
    else:
        time.sleep(0.4)
    return i


with Flow("serial") as serial:
    prev = None
    for i in range(8):
        node = PythonTask(f"nap{i}", nap, args=(i,))
        if prev is not None:
            prev >> node
        prev = node
"""


def _start(home: Path, path: Path, ledger: Path, gate: Path | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "ROTA_HOME": str(home), "LEDGER": str(ledger)}
    if gate is not None:
        env["GATE"] = str(gate)
    return subprocess.Popen(
        [sys.executable, "-m", "rota", "run", str(path), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(ledger: Path, n: int) -> None:
    deadline = time.monotonic() + 60
    while len(_ledger(ledger)) < n:
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.05)


def test_live_run_is_refused_and_a_killed_runner_is_taken_over_at_once(
    rota: RotaCli, home: Path, tmp_path: Path, write_flow: Callable[[str, str], Path]
) -> None:
    ledger = tmp_path / "ledger"
    gate = tmp_path / "gate"
    env = {"LEDGER": str(ledger), "GATE": str(gate)}
    path = write_flow("serial.py", SERIAL)
    proc = _start(home, path, ledger, gate)  # nap2 waits at the gate: the run cannot end
    try:
        _wait_for(ledger, 3)
        run_id = rota("runs", "list", "--json").json()[0]["run_id"]
        busy = rota("resume", run_id, env=env)
        assert busy.code == 2
        assert "is being driven by" in busy.err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    done_before = set(_ledger(ledger))
    gate.touch()
    # the heartbeat is fresh, but the runner's process is gone: take over without waiting
    resumed = rota("resume", "--last", "serial", "--json", env=env)
    assert resumed.code == 0, resumed.err
    assert resumed.json()["state"] == "success"
    assert "interrupted in try 1 (its runner died)" in resumed.err
    runs = _ledger(ledger)
    assert sorted(set(runs)) == [f"nap{i}" for i in range(8)]
    # a task that had finished before the kill ran at most once more (only if its success had
    # not been committed yet), never twice
    for name in done_before:
        assert runs.count(name) <= 2
    assert rota("resume", "--last", "serial", env=env).code == 2  # nothing unfinished now


def test_resume_after_sigterm_reuses_finished_tasks(
    rota: RotaCli, home: Path, tmp_path: Path, write_flow: Callable[[str, str], Path]
) -> None:
    ledger = tmp_path / "ledger"
    path = write_flow("serial.py", SERIAL)
    proc = _start(home, path, ledger)
    _wait_for(ledger, 3)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    shown = rota("runs", "list", "--json").json()[0]
    assert shown["state"] == "interrupted"
    states = rota("runs", "show", shown["run_id"], "--json").json()["tasks"]
    succeeded = {t for t, v in states.items() if v["state"] == "success"}
    assert succeeded and "interrupted" in {v["state"] for v in states.values()}
    before = _ledger(ledger)
    resumed = rota("resume", shown["run_id"], "--json", env={"LEDGER": str(ledger)})
    assert resumed.code == 0, resumed.err
    after = _ledger(ledger)[len(before) :]
    assert not succeeded & set(after), "a task that had succeeded ran again"
    assert sorted(set(before + after)) == [f"nap{i}" for i in range(8)]
