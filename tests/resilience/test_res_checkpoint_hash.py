"""A checkpoint is checked against its hash when a resumed attempt loads it: a tampered one fails
the attempt with an error naming it (and is not unpickled), a bare pickle from an older Rota is
ignored and the task starts over."""

from __future__ import annotations

import pathlib
import pickle
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reshelp import Result, attempts_of, run_cli

from rota.model.states import TaskState


class Touch:
    """Unpickling this creates *marker*."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


TRAINER = """
import os
from rota import flow, task


@task
def train(ctx) -> int:
    done = ctx.checkpoint.load(0)
    print(f"loaded checkpoint {done}")
    ctx.checkpoint.save(done + 1)
    if os.environ.get("STOP_AFTER_SAVE") == "1":
        raise RuntimeError("stopped after the checkpoint")
    return done + 1


@flow
def trainer() -> None:
    train()
"""


def run_then_resume(tmp_path: Path, tamper: Callable[[Path], None]) -> tuple[Result, str, Path]:
    """Run the trainer to a failure after its first checkpoint, *tamper* with it, resume."""
    home = tmp_path / "home"
    flow_file = tmp_path / "trainer.py"
    flow_file.write_text(textwrap.dedent(TRAINER))
    first = run_cli(home, tmp_path, "run", str(flow_file), "--json", env={"STOP_AFTER_SAVE": "1"})
    assert first.code == 1, first.err
    run_id = first.json()["run_id"]
    path = home / "checkpoints" / run_id / "train"
    assert path.exists()
    tamper(path)
    return run_cli(home, tmp_path, "resume", run_id, "--json"), run_id, home


def test_a_tampered_checkpoint_fails_the_resumed_attempt_naming_it(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    planted: list[Path] = []

    def tamper(path: Path) -> None:  # keep the recorded hash, change the pickle
        header = path.read_bytes().partition(b"\n")[0]
        path.write_bytes(header + b"\n" + pickle.dumps(Touch(marker)))
        planted.append(path)

    resumed, run_id, home = run_then_resume(tmp_path, tamper)
    assert resumed.code == 1, resumed.err
    assert resumed.json()["tasks"]["train"]["state"] == "failed"
    last = attempts_of(home, run_id, "train")[-1]
    assert (last.try_number, last.state, last.error_type) == (2, TaskState.FAILED, "ArtifactError")
    assert f"checkpoint {planted[0]} of task 'train' is corrupt" in (last.error_message or "")
    assert "\n" not in (last.error_message or "")
    assert not marker.exists()


def test_a_bare_pickle_checkpoint_is_ignored_and_the_task_starts_over(tmp_path: Path) -> None:
    marker = tmp_path / "marker"

    def tamper(path: Path) -> None:  # a checkpoint as Rota wrote them before they had a hash
        path.write_bytes(pickle.dumps(Touch(marker), protocol=5))

    resumed, run_id, home = run_then_resume(tmp_path, tamper)
    assert resumed.code == 0, resumed.err
    assert resumed.json()["tasks"]["train"]["state"] == "success"
    logs = run_cli(home, tmp_path, "tasks", "logs", run_id, "train", "--attempt", "2")
    assert "has no content hash" in logs.out and "loaded checkpoint 0" in logs.out
    assert not marker.exists()
