"""Callbacks and notifiers: a webhook to a real local HTTP server, a command notifier, retry and
success callbacks, run callbacks, and callbacks that raise (logged, never changing a state)."""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from reshelp import run_cli

from rota import CallbackContext, CommandNotifier, Flow, PythonTask, WebhookNotifier
from rota.engine.report import RunSummary
from rota.engine.runner import FlowRef, Runner
from rota.executors.base import Executor
from rota.executors.pool import LocalPoolExecutor
from rota.executors.threads import InProcessExecutor
from rota.model.dag import Dag
from rota.model.schedule import SystemClock
from rota.model.states import RunState, TaskState
from rota.store.base import Store
from rota.store.sql import open_store
from webhook_sink import Hook


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/rota.db")
    yield s
    s.close()


def run(store: Store, dag: Dag, tmp_path: Path, kind: str = "inprocess") -> RunSummary:
    ex: Executor = (
        LocalPoolExecutor(2, str(tmp_path / "logs")) if kind == "local" else InProcessExecutor()
    )
    try:
        return Runner(store, ex, home=tmp_path, clock=SystemClock()).run(dag, FlowRef(dag.name))
    finally:
        ex.close()


def ok() -> str:
    return "ok"


def boom(name: str) -> None:
    raise RuntimeError(f"{name} broke")


def fail_first(k: int, ctx: Any) -> str:
    if ctx.try_number <= k:
        raise ValueError(f"failure {ctx.try_number}")
    return "ok"


# --- webhook -----------------------------------------------------------------------------------


def webhook_flow(url: str) -> Dag:
    notifier = WebhookNotifier(url, headers={"X-Token": "secret"})
    with Flow("hooked", on_failure=notifier) as f:
        a = PythonTask("a", boom, args=("a",))
        PythonTask("b", boom, args=("b",), retries=1)  # fails twice: one failure, one POST
        PythonTask("c", boom, args=("c",))
        PythonTask("d", ok)
        PythonTask("e", fail_first, kwargs={"k": 1}, retries=1)  # a retry, then success
        a >> PythonTask("after_a", ok)  # upstream_failed: not a failed task, no POST
    return f.build()


@pytest.mark.parametrize("kind", ["inprocess", "local"])
def test_webhook_posts_once_per_failed_task(
    store: Store, tmp_path: Path, hook: Hook, kind: str
) -> None:
    summary = run(store, webhook_flow(hook.url), tmp_path, kind)
    states = {tid: t.state for tid, t in summary.tasks.items()}
    assert states == {
        "a": TaskState.FAILED,
        "b": TaskState.FAILED,
        "c": TaskState.FAILED,
        "d": TaskState.SUCCESS,
        "e": TaskState.SUCCESS,
        "after_a": TaskState.UPSTREAM_FAILED,
    }
    # the runner waits for its callbacks before it returns: every POST has arrived
    assert len(hook.requests) == 3
    assert all(r.path == "/hook" for r in hook.requests)
    assert all(r.content_type == "application/json" for r in hook.requests)
    assert all(r.token == "secret" for r in hook.requests)
    bodies = sorted(hook.bodies(), key=lambda b: b["task_id"])
    assert [b["task_id"] for b in bodies] == ["a", "b", "c"]
    for body in bodies:
        assert body["event"] == "failure"
        assert body["state"] == "failed"
        assert body["run_id"] == summary.run_id
        assert body["flow"] == "hooked"
        assert body["error_type"] == "RuntimeError"
        assert body["error_message"] == f"{body['task_id']} broke"
    assert {b["task_id"]: b["try_number"] for b in bodies} == {"a": 1, "b": 2, "c": 1}


WEBHOOK_FLOW_FILE = """
import os
from rota import WebhookNotifier, flow, task


@task
def bad(name: str) -> None:
    raise RuntimeError(f"{name} broke")


@task
def good() -> int:
    return 1


@flow(on_failure=WebhookNotifier(os.environ["HOOK_URL"]))
def hooked_cli() -> None:
    for name in ("x", "y", "z"):
        bad(name, task_id=name)
    good()
    good()
"""


def test_webhook_from_the_cli(tmp_path: Path, hook: Hook) -> None:
    home = tmp_path / "home"
    path = tmp_path / "hooked.py"
    path.write_text(textwrap.dedent(WEBHOOK_FLOW_FILE))
    result = run_cli(home, tmp_path, "run", str(path), "--json", env={"HOOK_URL": hook.url})
    assert result.code == 1, result.err
    summary = result.json()
    assert [t["state"] for t in summary["tasks"].values()].count("failed") == 3
    bodies = hook.bodies()
    assert sorted(b["task_id"] for b in bodies) == ["x", "y", "z"]
    assert {b["event"] for b in bodies} == {"failure"}
    assert {b["run_id"] for b in bodies} == {summary["run_id"]}


def test_webhook_error_status_is_logged_and_changes_nothing(store: Store, tmp_path: Path) -> None:
    failing_server = Hook(status=500)
    try:
        summary = run(store, webhook_flow(failing_server.url), tmp_path)
    finally:
        failing_server.close()
    assert len(failing_server.requests) == 3  # each was tried, each got a 500
    assert summary.tasks["a"].state is TaskState.FAILED
    assert summary.tasks["d"].state is TaskState.SUCCESS
    log = (tmp_path / "logs" / summary.run_id / "callbacks.log").read_text()
    assert log.count("callback WebhookNotifier for failure of task") == 3
    assert "HTTP Error 500" in log


# --- command notifier --------------------------------------------------------------------------


def test_command_notifier_gets_the_context_in_its_env_and_stdin(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "notified"
    out.mkdir()
    monkeypatch.setenv("NOTIFY_DIR", str(out))
    notifier = CommandNotifier(
        'env | grep "^ROTA_" > "$NOTIFY_DIR/$ROTA_TASK_ID.env"; '
        'cat > "$NOTIFY_DIR/$ROTA_TASK_ID.json"'
    )
    with Flow("commanded", on_failure=notifier) as f:
        PythonTask("broken", boom, args=("broken",))
        PythonTask("fine", ok)
    summary = run(store, f.build(), tmp_path)
    assert sorted(p.name for p in out.iterdir()) == ["broken.env", "broken.json"]
    env = dict(
        line.split("=", 1) for line in (out / "broken.env").read_text().splitlines() if "=" in line
    )
    assert env["ROTA_EVENT"] == "failure"
    assert env["ROTA_RUN_ID"] == summary.run_id
    assert env["ROTA_FLOW"] == "commanded"
    assert env["ROTA_TASK_ID"] == "broken"
    assert env["ROTA_STATE"] == "failed"
    assert env["ROTA_ERROR"] == "broken broke"
    body = json.loads((out / "broken.json").read_text())
    assert body["event"] == "failure" and body["task_id"] == "broken"
    assert body["run_id"] == summary.run_id and body["try_number"] == 1


# --- retry, success and run callbacks ----------------------------------------------------------


class Recorder:
    """A callback that records every context it is called with (thread-safe)."""

    def __init__(self) -> None:
        self.calls: list[CallbackContext] = []
        self.lock = threading.Lock()

    def __call__(self, ctx: CallbackContext) -> None:
        with self.lock:
            self.calls.append(ctx)

    def seen(self) -> list[tuple[str, str | None, int | None]]:
        return sorted((c.event, c.task_id, c.try_number) for c in self.calls)


def test_retry_and_success_callbacks(store: Store, tmp_path: Path) -> None:
    retries, successes, failures = Recorder(), Recorder(), Recorder()
    own_success = Recorder()
    with Flow("lifecycle", on_success=successes, on_failure=failures) as f:
        PythonTask(
            "flaky",
            fail_first,
            kwargs={"k": 2},
            retries=2,
            retry_delay=timedelta(seconds=0.05),
            on_retry=retries,
        )
        PythonTask("plain", ok)
        PythonTask("own", ok, on_success=own_success)  # its own callback replaces the default
    summary = run(store, f.build(), tmp_path)
    assert summary.state is RunState.SUCCESS
    assert retries.seen() == [("retry", "flaky", 1), ("retry", "flaky", 2)]
    for ctx in retries.calls:
        assert ctx.state == "up_for_retry"
        assert ctx.error_type == "ValueError"
        assert ctx.error_message == f"failure {ctx.try_number}"
        assert ctx.traceback is not None and "fail_first" in ctx.traceback
    assert successes.seen() == [("success", "flaky", 3), ("success", "plain", 1)]
    assert all(c.state == "success" and c.error_type is None for c in successes.calls)
    assert own_success.seen() == [("success", "own", 1)]
    assert failures.calls == []


@pytest.mark.parametrize("fails", [True, False])
def test_run_callbacks_are_called_once(store: Store, tmp_path: Path, fails: bool) -> None:
    run_failure, run_success = Recorder(), Recorder()
    with Flow(
        "runcb", params={"fails": fails}, on_run_failure=run_failure, on_run_success=run_success
    ) as f:
        for i in range(3):
            PythonTask(f"t{i}", boom if fails else ok, args=(f"t{i}",) if fails else ())
        PythonTask("fine", ok)
    summary = run(store, f.build(), tmp_path)
    called, silent = (run_failure, run_success) if fails else (run_success, run_failure)
    assert silent.calls == []
    (ctx,) = called.calls
    assert ctx.event == ("run_failure" if fails else "run_success")
    assert ctx.state == ("failed" if fails else "success")
    assert ctx.run_id == summary.run_id and ctx.flow == "runcb"
    assert dict(ctx.params) == {"fails": fails}
    # a failed run names its failed tasks, each with its error; the first is the context's own
    expected = [("t0", "t0 broke"), ("t1", "t1 broke"), ("t2", "t2 broke")] if fails else []
    assert [(t.task_id, t.error_message) for t in ctx.failed_tasks] == expected
    assert ctx.task_id == ("t0" if fails else None)
    assert ctx.error_message == ("t0 broke" if fails else None)


def test_callbacks_run_after_the_state_is_committed(store: Store, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/rota.db"
    seen: dict[str, str] = {}

    def look(ctx: CallbackContext) -> None:
        other = open_store(url)  # a connection of its own: sees only committed rows
        try:
            (latest,) = [a for a in other.attempts(ctx.run_id) if a.task_id == ctx.task_id][-1:]
            seen[f"{ctx.task_id}:{ctx.event}"] = latest.state.value
        finally:
            other.close()

    with Flow("committed", on_failure=look, on_success=look) as f:
        PythonTask("good", ok)
        PythonTask("bad", boom, args=("bad",))
    run(store, f.build(), tmp_path)
    assert seen == {"good:success": "success", "bad:failure": "failed"}


# --- callbacks that raise ----------------------------------------------------------------------


def raiser(ctx: CallbackContext) -> None:
    raise RuntimeError(f"callback exploded on {ctx.event}")


def lifecycle_flow(name: str, cb: Callable[[CallbackContext], None] | None, after: Recorder) -> Dag:
    cbs: Any = [cb, after] if cb is not None else after
    options: dict[str, Any] = {
        "on_success": cbs,
        "on_failure": cbs,
        "on_retry": cbs,
        "on_run_failure": cbs,
        "on_run_success": cbs,
    }
    with Flow(name, **options) as f:
        a = PythonTask("a", ok)
        b = PythonTask("b", boom, args=("b",))
        c = PythonTask("c", fail_first, kwargs={"k": 1}, retries=1)
        d = PythonTask("d", ok)
        e = PythonTask("e", ok, trigger_rule="all_done")
        a >> d
        b >> d
        [b, c] >> e
    return f.build()


def test_a_raising_callback_is_logged_and_changes_no_state(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    results = {}
    recorders = {}
    for name, cb in (("quiet", None), ("noisy", raiser)):
        recorders[name] = Recorder()
        s = open_store(f"sqlite:///{tmp_path}/{name}.db")
        try:
            summary = run(s, lifecycle_flow(name, cb, recorders[name]), tmp_path)
            results[name] = (
                summary,
                {tid: (t.state, t.attempts) for tid, t in summary.tasks.items()},
            )
        finally:
            s.close()
    quiet, noisy = results["quiet"], results["noisy"]
    assert noisy[1] == quiet[1]  # the same states and attempt counts, raising callbacks or not
    assert noisy[0].state is quiet[0].state is RunState.FAILED
    assert noisy[1]["e"] == (TaskState.SUCCESS, 1)
    # a callback listed after the raising one still ran, for every event
    assert recorders["noisy"].seen() == recorders["quiet"].seen()
    events = sorted(c.event for c in recorders["noisy"].calls)
    assert events == ["failure", "retry", "run_failure", "success", "success", "success"]
    # each raise is logged with its traceback, and announced in one line on stderr
    log = (tmp_path / "logs" / noisy[0].run_id / "callbacks.log").read_text()
    for event in ("success", "failure", "retry", "run_failure"):
        assert f"callback raiser for {event} of" in log
    assert log.count("RuntimeError: callback exploded on") == 6
    assert "Traceback" in log
    err = capfd.readouterr().err
    assert err.count("rota: callback raiser for") == 6
    assert not (tmp_path / "logs" / quiet[0].run_id / "callbacks.log").exists()


def test_a_webhook_that_never_answers_times_out_and_changes_nothing(
    store: Store, tmp_path: Path
) -> None:
    import socket

    # a server that accepts connections and never answers
    silent = socket.create_server(("127.0.0.1", 0))
    silent.listen(16)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
    try:
        with Flow("silent", on_failure=WebhookNotifier(url, timeout=0.5)) as f:
            PythonTask("bad", boom, args=("bad",))
            PythonTask("good", ok)
        summary = run(store, f.build(), tmp_path)
    finally:
        silent.close()
    assert summary.tasks["bad"].state is TaskState.FAILED
    assert summary.tasks["good"].state is TaskState.SUCCESS
    assert summary.state is RunState.FAILED
    log = (tmp_path / "logs" / summary.run_id / "callbacks.log").read_text()
    assert "callback WebhookNotifier for failure of task bad failed" in log
    assert "timed out" in log
