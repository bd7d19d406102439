"""Runs from Python: ``flow.run()`` for both flow styles on the CLI's store, its RunResult,
``rota.resume``, a running event loop, a thread, and calling a flow like a function."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import apiflows
import pytest

import rota
from rota.config import Settings
from rota.engine.result import RunResult
from rota.errors import ArtifactError, FlowNotCalled, NoOutput, RunFailed, UserError
from rota.model.states import RunState, TaskState
from rota.store.sql import open_store
from rota.testing import sandbox_settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ROTA_HOME and the store there: what ``flow.run()`` (and ``rota``) read by default."""
    folder = tmp_path / "home"
    monkeypatch.setenv("ROTA_HOME", str(folder))
    monkeypatch.delenv("ROTA_DATABASE_URL", raising=False)
    monkeypatch.delenv("ROTA_ARTIFACTS", raising=False)
    monkeypatch.delenv("ROTA_EXECUTOR", raising=False)
    return folder


def rota_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rota", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_flow_function_run_returns_a_result_the_cli_sees(home: Path) -> None:
    result = apiflows.ml_pipeline.run(n=4, threshold=0.5, executor="threads", workers=2)
    assert isinstance(result, RunResult)
    assert result.state is RunState.SUCCESS and result.ok
    assert result.output("extract") == [0, 1, 2, 3]
    assert result.output("square") == [0, 1, 4, 9]
    assert result.output("square", 3) == 9
    model = result.output("fit")
    assert isinstance(model, apiflows.Model) and model.weights == [0.0, 0.5, 1.0, 1.5]
    assert result.output("evaluate") == {"score": 3.0 + 14}
    assert set(result.tasks) == {"extract", "square", "fit", "evaluate"}
    assert all(t.state is TaskState.SUCCESS for t in result.tasks.values())
    # every attempt, the four mapped instances included
    assert sorted(a.map_index for a in result.attempts if a.task_id == "square") == [-1, 0, 1, 2, 3]
    assert dict(result.params) == {"n": 4, "threshold": 0.5}
    # the same store as the CLI: rota runs show finds the run in ROTA_HOME
    shown = rota_cli("runs", "show", result.run_id)
    assert shown.returncode == 0, shown.stderr
    assert f"run {result.run_id} · flow ml_pipeline · success" in shown.stdout


def test_operator_flow_runs_with_the_local_pool(home: Path) -> None:
    result = apiflows.ops.run(executor="local", workers=2)
    assert result.state is RunState.SUCCESS
    assert result.output("first") == 42
    assert [a.state for a in result.attempts_of("echo")] == [TaskState.SUCCESS]


def test_failure_is_returned_or_raised_on_request(home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "fail-now"
    marker.touch()
    result = apiflows.flaky.run(marker=str(marker), executor="inprocess")
    assert result.state is RunState.FAILED and not result.ok
    assert result.failed_tasks == ["maybe_fail"]
    assert [f.line() for f in result.failures] == [
        "maybe_fail: ValueError: the marker fail-now is there"
    ]
    assert result.tasks["after"].state is TaskState.UPSTREAM_FAILED
    with pytest.raises(NoOutput, match=r"maybe_fail.*failed.*ValueError"):
        result.output("maybe_fail")
    with pytest.raises(NoOutput, match="no task 'nope'"):
        result.output("nope")
    with pytest.raises(RunFailed, match="maybe_fail: ValueError: the marker") as caught:
        apiflows.flaky.run(marker=str(marker), executor="inprocess", raise_on_failure=True)
    assert isinstance(caught.value.result, RunResult)
    assert any("traceback of maybe_fail" in note for note in caught.value.__notes__)


def test_resume_runs_only_what_failed(home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "fail-now"
    marker.touch()
    first = apiflows.flaky.run(marker=str(marker), executor="inprocess")
    assert first.state is RunState.FAILED
    marker.unlink()
    again = rota.resume(first.run_id, executor="inprocess")
    assert again.run_id == first.run_id
    assert again.state is RunState.SUCCESS
    assert again.output("after") == "fine!"
    assert [a.try_number for a in again.attempts_of("maybe_fail")] == [1, 2]
    with pytest.raises(UserError):
        rota.resume(first.run_id)  # it succeeded: nothing to resume


def test_run_inside_a_running_event_loop(home: Path) -> None:
    async def notebook_cell() -> RunResult:
        return apiflows.ml_pipeline.run(n=2, executor="local", workers=2)

    result = asyncio.run(notebook_cell())
    assert result.state is RunState.SUCCESS
    assert result.output("extract") == [0, 1]

    async def to_thread() -> RunResult:
        return await asyncio.to_thread(apiflows.ml_pipeline.run, n=3, executor="threads")

    assert asyncio.run(to_thread()).output("square") == [0, 1, 4]


def test_run_from_a_thread_that_is_not_the_main_one(home: Path) -> None:
    got: dict[str, Any] = {}

    def work() -> None:
        try:
            got["result"] = apiflows.ml_pipeline.run(n=2, executor="local", workers=2)
        except BaseException as err:  # the test reports it below
            got["error"] = err

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=120)
    assert "error" not in got, got.get("error")
    assert got["result"].state is RunState.SUCCESS
    assert got["result"].output("evaluate") == {"score": 0.5 + 1}


def test_calling_a_flow_says_to_use_run(home: Path) -> None:
    with pytest.raises(FlowNotCalled, match=r"use ml_pipeline\.run\(n=\.\.\.\)") as caught:
        apiflows.ml_pipeline(n=3)
    assert "ml_pipeline.fn(...) calls the plain function" in str(caught.value)
    assert isinstance(caught.value, TypeError)
    with pytest.raises(FlowNotCalled, match=r"use f\.run\(\)"):
        apiflows.ops()
    assert not (home / "rota.db").exists()  # nothing was run


def test_bad_parameter_is_a_user_error_before_anything_is_stored(home: Path) -> None:
    with pytest.raises(UserError, match="nope"):
        apiflows.ml_pipeline.run(nope=1)
    assert not (home / "rota.db").exists()


def test_output_is_checked_against_its_content_hash(tmp_path: Path) -> None:
    # every output in a file (none kept in its row), so the file can be tampered with
    settings: Settings = dataclasses.replace(sandbox_settings(tmp_path), inline_output_max=0)
    result = apiflows.ml_pipeline.run(n=2, settings=settings)
    rec = result.tasks["fit"].latest
    assert rec.output_path is not None
    stored = Path(settings.artifacts) / rec.output_path
    if not stored.exists():  # a path relative to the artifact root, or absolute
        stored = Path(rec.output_path)
    stored.write_bytes(stored.read_bytes() + b"tampered")
    with pytest.raises(ArtifactError):
        result.output("fit")
    assert result.output("extract") == [0, 1]


SLEEPY = """
import sys, time
from pathlib import Path
from rota import flow, task

@task
def slow(marker: str) -> None:
    Path(marker).touch()
    time.sleep(120)

@flow
def sleepy(marker: str = "") -> None:
    slow(marker)

try:
    sleepy.run(marker=sys.argv[1], executor="local", workers=1)
except KeyboardInterrupt:
    print("interrupted")
    sys.exit(130)
"""


def test_ctrl_c_in_the_main_thread_interrupts_the_run(home: Path, tmp_path: Path) -> None:
    script = tmp_path / "sleepy.py"
    script.write_text(SLEEPY)
    marker = tmp_path / "started"
    env = {**os.environ, "ROTA_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marker)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert proc.poll() is None, "the script ended before its task started"
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in out
    with open_store(f"sqlite:///{home}/rota.db") as store:
        (run,) = store.list_runs()
        assert run.state is RunState.INTERRUPTED
        assert [a.state for a in store.attempts(run.run_id)] == [TaskState.INTERRUPTED]


def test_a_flow_defined_in_a_notebook_is_resumed_with_flow_given(
    home: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "fail-now"
    marker.touch()

    @rota.task
    def check(path: str) -> str:
        if Path(path).exists():
            raise RuntimeError("still there")
        return "gone"

    @rota.flow(name="cell")
    def cell(path: str = "") -> None:
        check(path)

    first = cell.run(path=str(marker), executor="inprocess")
    assert first.state is RunState.FAILED
    marker.unlink()
    with pytest.raises(UserError, match=r"rota\.resume\('.*', flow=\.\.\.\)"):
        rota.resume(first.run_id)
    again = rota.resume(first.run_id, flow=cell, executor="inprocess")
    assert again.output("check") == "gone"
