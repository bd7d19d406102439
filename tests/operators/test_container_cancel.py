"""What a container task leaves is removed (real podman): a cancel ends a pool worker as a timeout
does (SIGTERM, a grace, then SIGKILL) and the worker removes its container before it dies; the
runner that drives a run again (a resume, a takeover) removes the containers labelled with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fixtures_podman import BUSYBOX_IMAGE, busybox_image, containers_with, podman  # noqa: F401
from rota import ContainerTask, Flow, task
from rota.engine.leftovers import remove_leftovers
from rota.engine.runner import FlowRef, Runner
from rota.executors.base import AttemptSpec
from rota.executors.pool import LocalPoolExecutor
from rota.executors.threads import InProcessExecutor
from rota.model.schedule import SystemClock
from rota.model.states import RunState
from rota.operators.containertask import check_options
from rota.store.sql import open_store

pytestmark = pytest.mark.usefixtures("busybox_image")


def _spec(tmp_path: Path, run_id: str) -> AttemptSpec:
    op = check_options("nap", BUSYBOX_IMAGE, ["sleep", "300"])
    return AttemptSpec(
        attempt_id=1, run_id=run_id, flow="f", task_id="nap", map_index=-1, try_number=1,
        op=op, args=(), kwargs={}, inputs=(), artifacts=str(tmp_path / "artifacts"),
        log_path=str(tmp_path / "logs" / "nap.log"),
    )  # fmt: skip


def test_a_cancel_sigterms_the_worker_which_removes_its_container(tmp_path: Path) -> None:
    run_id = f"cancel-{os.getpid()}-{tmp_path.name}"
    pool = LocalPoolExecutor(1, str(tmp_path / "logs"), kill_grace=20.0)
    try:
        pool.submit(_spec(tmp_path, run_id))
        limit = time.monotonic() + 60
        while not containers_with(f"rota.run={run_id}"):
            assert time.monotonic() < limit, "the container never started"
            pool.poll(0.1)
        (worker,) = pool._workers
    finally:
        pool.close(cancel=True)
    # it died of the SIGTERM (its lifeline's end would exit 70, a SIGKILL -9)...
    assert worker.proc.exitcode == -signal.SIGTERM
    # ...after it had removed the container: podman ps -a shows none of the run
    assert containers_with(f"rota.run={run_id}") == []


def test_resume_s_leftovers_removal_covers_image_tasks_and_asks_each_runtime_once(
    tmp_path: Path,
) -> None:
    """A flow whose only container step is a Python task in an image has its run's containers
    removed too; three container tasks on one runtime list its containers once."""
    run_id = f"left-{os.getpid()}-{tmp_path.name}"
    left = podman(
        "run", "-d", "--label", "rota.managed=1", "--label", f"rota.run={run_id}",
        BUSYBOX_IMAGE, "sleep", "300",
    )  # fmt: skip
    assert left.returncode == 0, left.stderr
    names = containers_with(f"rota.run={run_id}")
    assert len(names) == 1
    with Flow("image_only") as image_only:

        @task(image=BUSYBOX_IMAGE)
        def f() -> int:
            return 1

        f()
    assert remove_leftovers(image_only.build(), run_id) == names
    assert containers_with(f"rota.run={run_id}") == []
    calls = tmp_path / "calls"
    wrapper = tmp_path / "podman-logged"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> {calls}\nexec podman "$@"\n')
    wrapper.chmod(0o700)
    with Flow("many") as many:
        for i in range(3):
            ContainerTask(f"c{i}", BUSYBOX_IMAGE, ["true"], runtime=str(wrapper))
    assert remove_leftovers(many.build(), run_id) == []
    assert calls.read_text().split() == ["ps"]  # one listing for the three tasks


def _dead_runner() -> str:
    """The id of a runner on this machine that died by SIGKILL (a real process)."""
    code = "from rota.engine.lease import RunnerId\nprint(RunnerId.current(), flush=True)\n"
    code += "import time\ntime.sleep(120)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    dead = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    return dead


def test_a_run_taken_over_from_a_dead_runner_has_its_containers_removed_first(
    tmp_path: Path,
) -> None:
    with Flow("taken") as taken:
        ContainerTask("c", BUSYBOX_IMAGE, ["echo", "again"])
    dag = taken.build()
    with open_store(f"sqlite:///{tmp_path / 'rota.db'}") as store:
        runner = Runner(store, InProcessExecutor(), home=tmp_path, clock=SystemClock())
        run = runner.create(dag, FlowRef("taken"))
        assert store.acquire(run.run_id, _dead_runner(), expect=None, at=datetime.now(UTC))
        left = podman(
            "run", "-d", "--label", "rota.managed=1", "--label", f"rota.run={run.run_id}",
            BUSYBOX_IMAGE, "sleep", "300",
        )  # fmt: skip
        assert left.returncode == 0, left.stderr
        assert len(containers_with(f"rota.run={run.run_id}")) == 1
        try:
            summary = runner.drive(run.run_id, dag, FlowRef("taken"))
        finally:
            runner.executor.close()
    assert summary.state is RunState.SUCCESS
    assert containers_with(f"rota.run={run.run_id}") == []
