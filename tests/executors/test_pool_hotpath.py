"""The local pool's hot path: batches of attempts per message, events streamed back, a prefetch
depth that follows the tasks' durations, and every guarantee of one attempt at a time kept
(timeouts from the attempt's own start, nothing queued lost with a worker, affinity, no worker
idle while another holds a queue behind a long task)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rota.artifacts.store import open_artifact_store
from rota.executors.base import (
    AttemptEvent,
    AttemptOutcome,
    AttemptSpec,
    AttemptStarted,
    InputRef,
    StoredRef,
)
from rota.executors.pool import LocalPoolExecutor
from rota.model.dag import Ref
from rota.operators.python import PythonOp
from rota.operators.shell import ShellOp

WAIT_S = 60.0  # a deadline for waiting only; no test compares a duration


def nothing() -> None:
    return None


def whoami() -> int:
    return os.getpid()


def nap(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def mark(folder: str, _upstream: int) -> int:
    """Leave a file in *folder* naming this process; return its pid."""
    Path(folder, f"{os.getpid()}-{time.monotonic_ns()}").touch()
    return os.getpid()


def wait_for_marks(folder: str, count: int, _upstream: int) -> bool:
    """Whether *count* files appeared in *folder* while this ran (it gives up after 20 s)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if len(list(Path(folder).iterdir())) >= count:
            return True
        time.sleep(0.02)
    return False


def _spec(
    tmp: Path,
    attempt_id: int,
    op: Any,
    *args: Any,
    inputs: tuple[InputRef, ...] = (),
    timeout: float | None = None,
) -> AttemptSpec:
    return AttemptSpec(
        attempt_id=attempt_id,
        run_id="run1",
        flow="f",
        task_id=f"t{attempt_id}",
        map_index=-1,
        try_number=1,
        op=op,
        args=args,
        kwargs={},
        inputs=inputs,
        artifacts=str(tmp / "artifacts"),
        log_path=str(tmp / "logs" / f"t{attempt_id}.log"),
        timeout=timeout,
    )


def _drain(ex: LocalPoolExecutor, n: int) -> list[AttemptEvent]:
    events: list[AttemptEvent] = []
    deadline = time.monotonic() + WAIT_S
    while sum(isinstance(e, AttemptOutcome) for e in events) < n:
        assert time.monotonic() < deadline, f"still waiting; got {events}"
        events.extend(ex.poll(0.05))
    return events


def _outcomes(events: list[AttemptEvent]) -> dict[int, AttemptOutcome]:
    found: dict[int, AttemptOutcome] = {}
    for e in events:
        if isinstance(e, AttemptOutcome):
            assert e.attempt_id not in found, f"two outcomes for attempt {e.attempt_id}"
            found[e.attempt_id] = e
    return found


def _value(out: AttemptOutcome) -> Any:
    assert out.ok, out.error
    assert out.output_path is not None and out.output_serializer is not None
    store = open_artifact_store(out.output_path)
    return store.get(
        out.output_path, out.output_serializer, producer="t", content_hash=out.output_hash
    )


def _ref(task_id: str, out: AttemptOutcome) -> InputRef:
    assert out.output_path is not None and out.output_serializer is not None
    stored = StoredRef(
        out.output_path, out.output_serializer, out.output_hash, out.output_size or 0
    )
    return InputRef(task_id, stored)


@pytest.fixture
def one_worker(tmp_path: Path) -> Iterator[LocalPoolExecutor]:
    ex = LocalPoolExecutor(1, str(tmp_path / "logs"), prefetch=8)
    yield ex
    ex.close()


def test_attempts_submitted_together_travel_in_one_message_and_events_stream_back(
    one_worker: LocalPoolExecutor, tmp_path: Path
) -> None:
    assert one_worker.capacity() == 8
    for i in range(1, 9):
        one_worker.submit(_spec(tmp_path, i, PythonOp(nothing)))
    assert one_worker.capacity() == 0
    events = _drain(one_worker, 8)
    assert one_worker.traffic.sent == 1  # eight attempts, one message
    # The worker did not wait for the engine between attempts: the first message said "started
    # 1", each next one carried an outcome and the next start, the last one the last outcome.
    assert one_worker.traffic.received == 9
    started = [e.attempt_id for e in events if isinstance(e, AttemptStarted)]
    assert started == list(range(1, 9))
    assert all(out.ok for out in _outcomes(events).values())
    assert one_worker.capacity() == 8


def test_the_depth_follows_the_tasks_durations(tmp_path: Path) -> None:
    ex = LocalPoolExecutor(2, str(tmp_path / "logs"))
    try:
        assert ex.capacity() == 2, "nothing measured yet: one attempt per worker"
        for i in range(1, 21):
            ex.submit(_spec(tmp_path, i, PythonOp(nothing)))
            _drain(ex, 1)
        short = ex.capacity()
        assert short > 2, "short tasks: each worker holds several"
        ex.submit(_spec(tmp_path, 21, PythonOp(nap), 0.5))
        _drain(ex, 1)
        # One long attempt is enough: a worker holds only what it runs, so no attempt waits
        # behind a long one, and no run holds more slots than it has workers busy.
        assert ex.capacity() == 2
    finally:
        ex.close()


def test_a_timeout_counts_from_the_attempts_own_start_not_its_queueing(
    one_worker: LocalPoolExecutor, tmp_path: Path
) -> None:
    one_worker.submit(_spec(tmp_path, 1, PythonOp(nap), 1.5))
    one_worker.submit(_spec(tmp_path, 2, PythonOp(nap), 0.1, timeout=1.0))  # queued 1.5 s
    one_worker.submit(_spec(tmp_path, 3, PythonOp(nap), 30, timeout=0.5))
    outs = _outcomes(_drain(one_worker, 3))
    assert outs[1].ok and outs[2].ok, (outs[1].error, outs[2].error)
    assert outs[2].started_at >= outs[1].finished_at
    assert outs[3].error is not None and outs[3].error.type_name == "TaskTimeout"


def test_a_timeout_does_not_lose_the_attempts_queued_behind_it(
    one_worker: LocalPoolExecutor, tmp_path: Path
) -> None:
    (first_pid,) = one_worker.pids
    one_worker.submit(_spec(tmp_path, 1, PythonOp(nap), 30, timeout=0.5))
    for i in (2, 3, 4):
        one_worker.submit(_spec(tmp_path, i, PythonOp(whoami)))
    events = _drain(one_worker, 4)
    outs = _outcomes(events)
    assert outs[1].error is not None and outs[1].error.type_name == "TaskTimeout"
    # the three never began at the killed worker: they ran, once each, at its replacement
    (fresh_pid,) = one_worker.pids
    assert fresh_pid != first_pid
    assert [_value(outs[i]) for i in (2, 3, 4)] == [fresh_pid] * 3
    started = [e.attempt_id for e in events if isinstance(e, AttemptStarted)]
    assert started == [1, 2, 3, 4]


def test_a_dead_worker_reports_its_running_attempt_and_its_queue_runs_elsewhere(
    one_worker: LocalPoolExecutor, tmp_path: Path
) -> None:
    one_worker.submit(_spec(tmp_path, 1, ShellOp("kill -9 $PPID; sleep 5")))
    one_worker.submit(_spec(tmp_path, 2, PythonOp(whoami)))
    outs = _outcomes(_drain(one_worker, 2))
    assert outs[1].error is not None and outs[1].error.type_name == "WorkerLost"
    assert _value(outs[2]) == one_worker.pids[0]


def test_an_attempt_goes_to_the_worker_holding_its_input(tmp_path: Path) -> None:
    ex = LocalPoolExecutor(2, str(tmp_path / "logs"), prefetch=4)
    try:
        ex.submit(_spec(tmp_path, 1, PythonOp(whoami)))
        producer = _outcomes(_drain(ex, 1))[1]
        holder = _value(producer)
        ref = _ref("t1", producer)
        for i in (2, 3):
            ex.submit(_spec(tmp_path, i, PythonOp(mark), str(tmp_path), Ref("t1"), inputs=(ref,)))
        outs = _outcomes(_drain(ex, 2))
        assert [_value(outs[i]) for i in (2, 3)] == [holder, holder]
    finally:
        ex.close()


def test_an_idle_worker_takes_over_the_queue_behind_a_long_attempt(tmp_path: Path) -> None:
    """Seven attempts all prefer the worker that holds their input: one waits (as a long task
    would) until the six others have run. They run at the other worker, which was idle."""
    marks = tmp_path / "marks"
    marks.mkdir()
    ex = LocalPoolExecutor(2, str(tmp_path / "logs"), prefetch=8)
    try:
        ex.submit(_spec(tmp_path, 1, PythonOp(whoami)))
        producer = _outcomes(_drain(ex, 1))[1]
        holder = _value(producer)
        ref = (_ref("t1", producer),)
        ex.submit(
            _spec(tmp_path, 2, PythonOp(wait_for_marks), str(marks), 6, Ref("t1"), inputs=ref)
        )
        for i in range(3, 9):
            ex.submit(_spec(tmp_path, i, PythonOp(mark), str(marks), Ref("t1"), inputs=ref))
        outs = _outcomes(_drain(ex, 7))
        assert _value(outs[2]) is True, "the six queued behind the long attempt never ran"
        (other,) = set(ex.pids) - {holder}
        assert {_value(outs[i]) for i in range(3, 9)} == {other}
        assert ex.traffic.revokes >= 1
    finally:
        ex.close()
