"""One contract suite that every executor passes. Add a new executor to EXECUTORS."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fixtures_dask import dask_cluster  # noqa: F401
from fixtures_s3 import s3_server  # noqa: F401
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

EXECUTORS = ["inprocess", "threads", "local", "dask"]


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Executor]:
    ex: Executor
    if request.param == "inprocess":
        ex = InProcessExecutor()
    elif request.param == "threads":
        ex = ThreadExecutor(2)
    elif request.param == "dask":
        ex = _dask_executor(request)
    else:
        ex = LocalPoolExecutor(2, str(tmp_path / "logs"))
    yield ex
    ex.close()


def _dask_executor(request: pytest.FixtureRequest) -> Executor:
    """A DaskExecutor on the session's real cluster (``dask scheduler`` + two workers)."""
    import cloudpickle

    from rota.executors.dask import DaskExecutor

    # The workers cannot import this test module: its functions travel by value, as a flow
    # file's would by path.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return DaskExecutor(request.getfixturevalue("dask_cluster").address)


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
    # all free again; the local pool may offer more once it has seen that the attempts are short
    assert executor.capacity() >= free


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


# --- whatever fails around the task, every attempt gets an outcome naming the real error --------


def chatty() -> int:
    print("some output")
    return 1


def calls_exit() -> None:
    sys.exit(3)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def raises_unprintable() -> None:
    raise Unprintable


def prints_a_lone_surrogate() -> int:
    print("before \udce9 after")
    return 2


def _break_logs_folder(logs: Path) -> str:
    """Make *logs* a folder this process cannot write in; return what a failure names.

    A 0500 folder where permission bits stop this process; as root they do not, so there (and
    the test says so) *logs* becomes a regular file, whose "subfolders" cannot be made either.
    """
    logs.mkdir(parents=True, exist_ok=True)
    logs.chmod(0o500)
    probe = logs / "probe"
    try:
        probe.touch()
    except PermissionError:
        return "permission bits"
    probe.unlink()
    logs.chmod(0o700)
    logs.rmdir()
    logs.write_text("a regular file where the logs folder should be (running as root)\n")
    return "a regular file"


def _repair_logs_folder(logs: Path) -> None:
    if logs.is_dir():
        logs.chmod(0o700)
    else:
        logs.unlink()


def test_an_unwritable_logs_folder_fails_the_attempt_with_the_real_error(
    executor: Executor, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    how = _break_logs_folder(logs)
    workers = list(getattr(executor, "pids", []))
    spec = replace(_spec(tmp_path, 1, PythonOp(chatty)), log_path=str(logs / "run1/t1/1.log"))
    try:
        executor.submit(spec)
        out = _outcome(_drain(executor, 1), 1)
    finally:
        _repair_logs_folder(logs)
    assert not out.ok and out.error is not None, how
    # The OS's own error, naming the folder: not a WorkerLost, not silence.
    assert out.error.type_name in {"PermissionError", "NotADirectoryError", "FileExistsError"}
    assert str(logs) in out.error.message, out.error.message
    assert "builtins.OSError" in out.error.mro
    # The executor goes on: the same workers run the next attempt, and its log is written.
    executor.submit(_spec(tmp_path, 2, PythonOp(chatty)))
    second = _outcome(_drain(executor, 1), 2)
    assert second.ok, second.error
    assert Path(str(second.log_path)).read_text() == "some output\n"
    assert list(getattr(executor, "pids", [])) == workers


def test_a_task_calling_sys_exit_fails_and_the_executor_goes_on(
    executor: Executor, tmp_path: Path
) -> None:
    workers = list(getattr(executor, "pids", []))
    executor.submit(_spec(tmp_path, 1, PythonOp(calls_exit)))
    out = _outcome(_drain(executor, 1), 1)
    assert not out.ok and out.error is not None
    assert out.error.type_name == "SystemExit" and out.error.exit_code == 3
    assert out.error.message == "the task called sys.exit(3)"
    executor.submit(_spec(tmp_path, 2, PythonOp(add), 1, 2))
    assert _value(_outcome(_drain(executor, 1), 2)) == 3
    assert list(getattr(executor, "pids", [])) == workers


def test_an_error_whose_text_cannot_be_made_still_fails_the_attempt(
    executor: Executor, tmp_path: Path
) -> None:
    executor.submit(_spec(tmp_path, 1, PythonOp(raises_unprintable)))
    out = _outcome(_drain(executor, 1), 1)
    assert not out.ok and out.error is not None
    assert out.error.type_name == "Unprintable"
    assert "could not be made" in out.error.message
    assert "raises_unprintable" in out.error.traceback


def test_output_that_is_not_valid_text_is_logged_with_a_stand_in(
    executor: Executor, tmp_path: Path
) -> None:
    executor.submit(_spec(tmp_path, 1, PythonOp(prints_a_lone_surrogate)))
    out = _outcome(_drain(executor, 1), 1)
    assert out.ok, out.error
    assert Path(str(out.log_path)).read_text() == "before ? after\n"


class _Unloadable:
    """Pickles, but cannot be unpickled (as an operator whose module a worker cannot import)."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_refuse_to_load, ("this operator cannot be loaded here",))


def _refuse_to_load(message: str) -> None:
    raise RuntimeError(message)


def test_local_pool_reports_an_operator_it_cannot_load_for_every_attempt(tmp_path: Path) -> None:
    ex = LocalPoolExecutor(1, str(tmp_path / "logs"))
    try:
        workers = ex.pids
        op: Any = _Unloadable()
        ex.submit(_spec(tmp_path, 1, op))
        first = _outcome(_drain(ex, 1), 1)
        ex.submit(_spec(tmp_path, 2, op))  # the engine sends an operator to a worker once
        second = _outcome(_drain(ex, 1), 2)
        for out in (first, second):
            assert not out.ok and out.error is not None
            assert "this operator cannot be loaded here" in out.error.message
        assert first.error is not None and first.error.type_name == "RuntimeError"
        assert ex.pids == workers, "a worker died: its attempts became WorkerLost"
    finally:
        ex.close()


def test_poll_with_nothing_running_waits_its_timeout(executor: Executor) -> None:
    """The engine blocks in poll until its next due time: an idle executor must wait the whole
    timeout, not return at once (the local pool and the in-process executor did, and the run loop
    spun during every retry back-off and sensor wait)."""
    began = time.monotonic()
    assert executor.poll(0.3) == []
    assert time.monotonic() - began >= 0.3
