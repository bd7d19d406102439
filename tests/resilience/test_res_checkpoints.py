"""Checkpoints: the ML example's retry trains only the epochs after the injected failure; a task
resumed after its runner was SIGKILLed goes on from its last checkpoint; and a process killed in
the middle of a checkpoint save leaves the previous checkpoint loadable."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from reshelp import REPO, attempts_of, cli_env, reap, rota_cmd, run_cli, wait_for

from rota.artifacts.local import FileCheckpoint
from rota.model.states import TaskState

ML_EXAMPLE = str(REPO / "examples" / "ml_pipeline.py")
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+): training accuracy", re.MULTILINE)


def epochs_in(log: str, total: int) -> list[int]:
    found = [(int(e), int(n)) for e, n in EPOCH_LINE.findall(log)]
    assert all(n == total for _, n in found)
    return [e for e, _ in found]


# --- the ML example ----------------------------------------------------------------------------


@pytest.mark.parametrize("fail_at", [5, 10])
def test_ml_example_retry_trains_only_the_epochs_after_the_failure(
    tmp_path: Path, fail_at: int
) -> None:
    home = tmp_path / "home"
    result = run_cli(home, tmp_path, "run", ML_EXAMPLE, "-p", f"fail_at_epoch={fail_at}", "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["state"] == "success"
    assert summary["tasks"]["train"]["attempts"] == 2
    states = {tid: t["state"] for tid, t in summary["tasks"].items()}
    assert states.pop("notify") == "skipped"  # the branch chose deploy
    assert set(states.values()) == {"success"}
    run_id = summary["run_id"]

    first = run_cli(home, tmp_path, "tasks", "logs", run_id, "train", "--attempt", "1")
    second = run_cli(home, tmp_path, "tasks", "logs", run_id, "train", "--attempt", "2")
    assert first.code == 0 and second.code == 0, (first.err, second.err)
    assert epochs_in(first.out, 10) == list(range(1, fail_at + 1))
    assert f"injected failure after epoch {fail_at}" in first.out
    assert epochs_in(second.out, 10) == list(range(fail_at + 1, 11))  # not 1-10
    assert f"resuming from the checkpoint of epoch {fail_at}" in second.out
    assert "resuming" not in first.out

    rows = attempts_of(home, run_id, "train")
    assert [a.state for a in rows] == [TaskState.UP_FOR_RETRY, TaskState.SUCCESS]
    assert rows[0].error_type == "RuntimeError"
    assert len(list((home / "models" / "digits").iterdir())) == 1  # deployed once


# --- a runner killed in the middle of a checkpointing task -------------------------------------

STEPS_FLOW = """
import os, time
from pathlib import Path
from rota import flow, task

LEDGER = Path(os.environ["LEDGER"])


@task
def steps(n: int, ctx) -> int:
    done = ctx.checkpoint.load(0)
    if done:
        print(f"resuming at step {done + 1}")
    for step in range(done + 1, n + 1):
        time.sleep(0.15)
        with LEDGER.open("a") as fh:
            fh.write(f"{ctx.try_number} {step}\\n")
        ctx.checkpoint.save(step)
    return n


@flow
def stepper(n: int = 30) -> None:
    steps(n)
"""


def test_resume_after_a_runner_kill_goes_on_from_the_last_checkpoint(tmp_path: Path) -> None:
    home = tmp_path / "home"
    flow_file = tmp_path / "stepper.py"
    flow_file.write_text(textwrap.dedent(STEPS_FLOW))
    ledger = tmp_path / "ledger.txt"
    env = {"LEDGER": str(ledger)}
    proc = subprocess.Popen(
        rota_cmd("run", str(flow_file), "--json"),
        env=cli_env(home, env),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            "8 steps",
            lambda: ledger.exists() and len(ledger.read_text().split("\n")) > 8,
            90,
            proc=proc,
        )
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        reap(proc)
    at_kill = ledger.read_text()
    time.sleep(1.0)
    # the worker ended itself when its lifeline closed: the orphaned attempt wrote nothing more
    assert ledger.read_text() == at_kill
    before = [tuple(map(int, line.split())) for line in at_kill.splitlines()]
    run_id = json.loads(
        run_cli(home, tmp_path, "runs", "list", "--json").out.strip().splitlines()[-1]
    )[0]["run_id"]

    result = run_cli(home, tmp_path, "resume", run_id, "--json", env=env)
    assert result.code == 0, result.err
    assert result.json()["tasks"]["steps"]["state"] == "success"
    rows = [tuple(map(int, line.split())) for line in ledger.read_text().splitlines()]
    assert rows[: len(before)] == before, "history changed"
    first = [s for t, s in rows if t == 1]
    second = [s for t, s in rows if t == 2]
    assert first == list(range(1, len(first) + 1))
    # the resumed attempt starts right after the last step the first one saved: nothing skipped,
    # at most the one step in flight at the kill runs again
    assert second == list(range(second[0], 31))
    assert second[0] in (first[-1], first[-1] + 1)
    logs = run_cli(home, tmp_path, "tasks", "logs", run_id, "steps", "--attempt", "2")
    assert f"resuming at step {second[0]}" in logs.out


# --- a kill in the middle of a save --------------------------------------------------------------

KILL_DURING_SAVE = """
import os, signal, sys
from pathlib import Path
from rota.artifacts.local import FileCheckpoint

path, where = Path(sys.argv[1]), sys.argv[2]
cp = FileCheckpoint(path, producer="train")
cp.save({"epoch": 1, "blob": b"1" * 1_000_000})


def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


if where == "write":  # die with half of the new checkpoint written
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            self.fh.flush()
            die()

    os.fdopen = lambda fd, mode: HalfWriter(real_fdopen(fd, mode))
elif where == "fsync":  # die with the data written, before it is made durable and renamed
    os.fsync = die
elif where == "replace":  # die with the new checkpoint complete, just before the rename
    os.replace = die
cp.save({"epoch": 2, "blob": b"2" * 1_000_000})
print("not killed")
"""


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_a_kill_during_a_save_keeps_the_previous_checkpoint(tmp_path: Path, where: str) -> None:
    script = tmp_path / "saver.py"
    script.write_text(textwrap.dedent(KILL_DURING_SAVE))
    path = tmp_path / "checkpoints" / "run" / "train"
    done = subprocess.run(
        [sys.executable, str(script), str(path), where],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "not killed" not in done.stdout
    cp = FileCheckpoint(path, producer="train")
    assert cp.load() == {"epoch": 1, "blob": b"1" * 1_000_000}
    leftovers = [p for p in path.parent.iterdir() if p != path]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".train.")  # the partial temp file
    # the next save still works, and replaces the checkpoint as a whole
    cp.save({"epoch": 3})
    assert cp.load() == {"epoch": 3}


SAVE_FOREVER = """
import sys
from pathlib import Path
from rota.artifacts.local import FileCheckpoint

cp = FileCheckpoint(Path(sys.argv[1]), producer="train")
epoch = 0
while True:
    epoch += 1
    cp.save({"epoch": epoch, "blob": bytes([epoch % 256]) * 3_000_000})
    print(epoch, flush=True)
"""


def test_a_kill_at_a_random_moment_of_a_save_loop_leaves_a_complete_checkpoint(
    tmp_path: Path,
) -> None:
    script = tmp_path / "forever.py"
    script.write_text(textwrap.dedent(SAVE_FOREVER))
    rng = random.Random(7)
    for n in range(6):
        path = tmp_path / f"cp{n}" / "train"
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()  # one save done
            assert first.strip() == "1", proc.stderr.read() if proc.stderr else ""
            time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate(timeout=30)
        finally:
            reap(proc)
        printed = [int(x) for x in (first + out).split()]
        state = FileCheckpoint(path, producer="train").load()
        epoch = state["epoch"]
        # complete (the payload matches its epoch) and at least as new as the last save reported
        assert state["blob"] == bytes([epoch % 256]) * 3_000_000
        assert epoch >= printed[-1]
        assert epoch <= printed[-1] + 1
