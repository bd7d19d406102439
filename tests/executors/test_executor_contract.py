"""One contract suite that every executor passes. Add a new executor to EXECUTORS."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rota.artifacts.store import open_artifact_store
from rota.errors import Skip
from rota.executors.base import (
    AttemptEvent,
    AttemptOutcome,
    AttemptSpec,
    AttemptStarted,
    Executor,
    InputRef,
    StoredRef,
)
from rota.executors.pool import LocalPoolExecutor
from rota.executors.threads import InProcessExecutor, ThreadExecutor
from rota.operators.python import PythonOp
from rota.operators.shell import ShellOp

EXECUTORS = ["inprocess", "threads", "local"]


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Executor]:
    ex: Executor
    if request.param == "inprocess":
        ex = InProcessExecutor()
    elif request.param == "threads":
        ex = ThreadExecutor(2)
    else:
        ex = LocalPoolExecutor(2, str(tmp_path / "logs"))
    yield ex
    ex.close()


def add(x: int, y: int) -> int:
    print(f"adding {x} and {y}")
    return x + y


def nothing() -> None:
    return None


def boom() -> None:
    raise ValueError("bad value")


def skip_me() -> None:
    raise Skip("not today")


def whoami() -> int:
    return os.getpid()


def _spec(
    tmp: Path, attempt_id: int, op: Any, *args: Any, inputs: tuple[InputRef, ...] = ()
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
    )


def _drain(ex: Executor, n: int, timeout: float = 30) -> list[AttemptEvent]:
    events: list[AttemptEvent] = []
    deadline = time.monotonic() + timeout
    while sum(isinstance(e, AttemptOutcome) for e in events) < n:
        assert time.monotonic() < deadline, f"timed out; got {events}"
        events.extend(ex.poll(0.1))
    return events


def _value(out: AttemptOutcome) -> Any:
    assert out.output_path is not None and out.output_serializer is not None
    store = open_artifact_store(out.output_path)
    return store.get(
        out.output_path, out.output_serializer, producer="t", content_hash=out.output_hash
    )


def _ref(out: AttemptOutcome) -> StoredRef:
    assert out.output_path is not None and out.output_serializer is not None
    return StoredRef(out.output_path, out.output_serializer, out.output_hash, out.output_size or 0)


def _outcome(events: list[AttemptEvent], attempt_id: int) -> AttemptOutcome:
    (found,) = [e for e in events if isinstance(e, AttemptOutcome) and e.attempt_id == attempt_id]
    return found


def test_success_writes_output_atomically_and_reports_start(
    executor: Executor, tmp_path: Path
) -> None:
    executor.submit(_spec(tmp_path, 1, PythonOp(add), 2, 3))
    events = _drain(executor, 1)
    started = [e for e in events if isinstance(e, AttemptStarted)]
    assert [e.attempt_id for e in started] == [1]
    out = _outcome(events, 1)
    assert out.ok and not out.skipped and out.error is None
    assert out.started_at <= out.finished_at
    assert out.output_path == str(tmp_path / "artifacts" / "run1" / "t1.json")
    assert out.output_serializer == "json"
    assert _value(out) == 5
    assert out.output_size == Path(out.output_path).stat().st_size
    stored = list((tmp_path / "artifacts" / "run1").iterdir())
    assert stored == [Path(out.output_path)], "temp file left"
    assert out.log_path is not None
    assert Path(out.log_path).read_text() == "adding 2 and 3\n"


def test_inputs_are_passed_and_none_outputs_store_nothing(
    executor: Executor, tmp_path: Path
) -> None:
    executor.submit(_spec(tmp_path, 1, PythonOp(add), 1, 2))
    first = _outcome(_drain(executor, 1), 1)
    executor.submit(_spec(tmp_path, 2, PythonOp(nothing)))
    none = _outcome(_drain(executor, 1), 2)
    assert none.ok and none.output_path is None and none.log_path is None
    from rota.model.dag import Ref

    refs = (InputRef("t1", _ref(first)), InputRef("t2", None))
    spec = _spec(tmp_path, 3, PythonOp(add), Ref("t1"), 10, inputs=refs)
    executor.submit(spec)
    third = _outcome(_drain(executor, 1), 3)
    assert third.ok, third.error
    assert _value(third) == 13


def test_failure_carries_type_message_traceback_and_log(executor: Executor, tmp_path: Path) -> None:
    executor.submit(_spec(tmp_path, 1, PythonOp(boom)))
    out = _outcome(_drain(executor, 1), 1)
    assert not out.ok
    assert out.error is not None
    assert out.error.type_name == "ValueError" and out.error.message == "bad value"
    assert "in boom" in out.error.traceback
    assert not (tmp_path / "artifacts" / "run1").exists()
    assert "ValueError: bad value" in Path(str(out.log_path)).read_text()


def test_skip_is_not_a_failure(executor: Executor, tmp_path: Path) -> None:
    executor.submit(_spec(tmp_path, 1, PythonOp(skip_me)))
    out = _outcome(_drain(executor, 1), 1)
    assert out.ok and out.skipped and out.error is None


def test_shell_exit_code_and_output(executor: Executor, tmp_path: Path) -> None:
    executor.submit(
        _spec(tmp_path, 1, ShellOp("echo out; echo err >&2; sh -c 'echo child'; exit 3"))
    )
    executor.submit(_spec(tmp_path, 2, ShellOp("echo first; echo last")))
    events = _drain(executor, 2)
    failed, ok = _outcome(events, 1), _outcome(events, 2)
    assert not failed.ok and failed.error is not None and failed.error.exit_code == 3
    log = Path(str(failed.log_path)).read_text()
    assert "out" in log and "err" in log and "child" in log
    assert ok.ok and _value(ok) == "last"


def test_capacity_is_bounded(executor: Executor, tmp_path: Path) -> None:
    free = executor.capacity()
    assert free >= 1
    for i in range(free):
        executor.submit(_spec(tmp_path, i, PythonOp(whoami)))
    assert executor.capacity() == 0
    _drain(executor, free)
    assert executor.capacity() == free


def test_local_pool_runs_attempts_in_other_processes(tmp_path: Path) -> None:
    ex = LocalPoolExecutor(2, str(tmp_path / "logs"))
    try:
        for i in range(6):
            ex.submit(_spec(tmp_path, i, PythonOp(whoami))) if ex.capacity() else None
        events = _drain(ex, 2)
        pids = {_value(e) for e in events if isinstance(e, AttemptOutcome)}
        assert os.getpid() not in pids
        assert pids <= set(ex.pids)
    finally:
        ex.close()


def test_local_pool_replaces_a_dead_worker(tmp_path: Path) -> None:
    ex = LocalPoolExecutor(1, str(tmp_path / "logs"))
    try:
        ex.submit(_spec(tmp_path, 1, ShellOp("kill -9 $PPID; sleep 5")))
        out = _outcome(_drain(ex, 1), 1)
        assert not out.ok and out.error is not None and out.error.type_name == "WorkerLost"
        ex.submit(_spec(tmp_path, 2, PythonOp(add), 1, 1))
        assert _outcome(_drain(ex, 1), 2).ok
    finally:
        ex.close()
