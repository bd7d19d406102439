"""A cancel ends a pool worker running a container task as a timeout does (SIGTERM, a grace, then
SIGKILL): the worker removes the attempt's container before it dies (real podman)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from fixtures_podman import BUSYBOX_IMAGE, busybox_image, containers_with  # noqa: F401
from rota.executors.base import AttemptSpec
from rota.executors.pool import LocalPoolExecutor
from rota.operators.containertask import check_options

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
