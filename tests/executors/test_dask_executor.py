"""The Dask executor on a real cluster: what the contract suite cannot say about it.

Timeouts and cancels end the task's process on the worker; an attempt Dask runs a second time
does not run the task again; a task asking for resources no worker has fails at submission.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from fixtures_dask import DaskCluster, dask_cluster  # noqa: F401
from fixtures_s3 import s3_server  # noqa: F401
from rota.executors.base import AttemptEvent, AttemptOutcome, AttemptSpec, AttemptStarted
from rota.executors.dask import DaskExecutor
from rota.operators.python import PythonOp
from rota.operators.shell import ShellOp

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import us


@pytest.fixture
def executor(dask_cluster: DaskCluster) -> Iterator[DaskExecutor]:  # noqa: F811
    ex = DaskExecutor(dask_cluster.address)
    yield ex
    ex.close(cancel=True)


def _spec(tmp: Path, attempt_id: int, op: Any, *args: Any, **fields: Any) -> AttemptSpec:
    return AttemptSpec(
        attempt_id=attempt_id, run_id="run1", flow="f", task_id=f"t{attempt_id}", map_index=-1,
        try_number=1, op=op, args=args, kwargs={}, inputs=(), artifacts=str(tmp / "artifacts"),
        log_path=str(tmp / "logs" / f"t{attempt_id}.log"), **fields,
    )  # fmt: skip


def _drain(ex: DaskExecutor, n: int, timeout: float = 60) -> list[AttemptEvent]:
    events: list[AttemptEvent] = []
    deadline = time.monotonic() + timeout
    while sum(isinstance(e, AttemptOutcome) for e in events) < n:
        assert time.monotonic() < deadline, f"timed out; got {events}"
        events.extend(ex.poll(0.1))
    return events


def _wait_started(ex: DaskExecutor, timeout: float = 60) -> list[AttemptEvent]:
    events: list[AttemptEvent] = []
    deadline = time.monotonic() + timeout
    while not any(isinstance(e, AttemptStarted) for e in events):
        assert time.monotonic() < deadline, f"never started; got {events}"
        events.extend(ex.poll(0.1))
    return events


def _gone(pid: int, timeout: float = 30) -> bool:
    """Wait until process *pid* no longer exists (a zombie counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def _pids_in(path: Path, ex: DaskExecutor, seen: list[AttemptEvent]) -> list[int]:
    """The pids the stuck task wrote to *path*, polling *ex* meanwhile (events go to *seen*)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text.endswith("\n") and len(text.split()) >= 2:
            return [int(p) for p in text.split()]
        seen.extend(ex.poll(0.05))  # an executor sends what was submitted when polled
    raise AssertionError(f"{path} never got the pids")


STUCK = "sleep 1000 & echo $$ $! > {pids}; wait"


def test_a_timeout_ends_the_task_and_its_children_on_the_worker(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    executor.submit(_spec(tmp_path, 1, ShellOp(STUCK.format(pids=pids)), timeout=1.0))
    seen: list[AttemptEvent] = []
    shell, child = _pids_in(pids, executor, seen)
    seen += [] if any(isinstance(e, AttemptOutcome) for e in seen) else _drain(executor, 1)
    (out,) = [e for e in seen if isinstance(e, AttemptOutcome)]
    assert not out.ok and out.error is not None
    assert out.error.type_name == "TaskTimeout"
    assert _gone(shell) and _gone(child), "the timed-out task still runs on the worker"
    executor.submit(_spec(tmp_path, 2, PythonOp(os.getpid)))  # the worker goes on
    (after,) = [e for e in _drain(executor, 1) if isinstance(e, AttemptOutcome)]
    assert after.ok, after.error


def test_cancelling_ends_running_attempts_on_the_workers(
    dask_cluster: DaskCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    ex = DaskExecutor(dask_cluster.address)
    pids = tmp_path / "pids"
    ex.submit(_spec(tmp_path, 1, ShellOp(STUCK.format(pids=pids))))
    seen = _wait_started(ex)
    shell, child = _pids_in(pids, ex, seen)
    ex.close(cancel=True)
    assert _gone(shell) and _gone(child), "a cancelled attempt still runs on its worker"


def note_run(ledger: str) -> str:
    with open(ledger, "a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")
    return "ran"


def test_an_attempt_dask_runs_again_does_not_run_the_task_again(
    dask_cluster: DaskCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Dask runs a task again when its worker is lost; Rota's claim turns that into WorkerLost."""
    ledger = tmp_path / "ledger"
    spec = _spec(tmp_path, 7, PythonOp(note_run), str(ledger))
    first, again = DaskExecutor(dask_cluster.address), DaskExecutor(dask_cluster.address)
    try:
        first.submit(spec)
        (ran,) = [e for e in _drain(first, 1) if isinstance(e, AttemptOutcome)]
        again.submit(spec)  # the same attempt, as Dask would resubmit it elsewhere
        (second,) = [e for e in _drain(again, 1) if isinstance(e, AttemptOutcome)]
    finally:
        first.close()
        again.close()
    assert ran.ok, ran.error
    assert not second.ok and second.error is not None
    assert second.error.type_name == "WorkerLost"
    assert "rota.errors.WorkerLost" in second.error.mro  # retried per the task's policy
    assert len(ledger.read_text().splitlines()) == 1, "the task ran twice"


def test_resources_no_worker_has_fail_at_submission(executor: DaskExecutor, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    needs = {"GPU": 1.0, "memory": 4e9}
    executor.submit(_spec(tmp_path, 1, PythonOp(note_run), str(ledger), resources=needs))
    (out,) = [e for e in _drain(executor, 1, timeout=30) if isinstance(e, AttemptOutcome)]
    assert not out.ok and out.error is not None
    assert out.error.type_name == "ResourceUnavailable"
    assert "GPU=1" in out.error.message and "memory=4e+09" in out.error.message
    assert "--resources" in out.error.message
    assert not ledger.exists()
