"""Notifiers and callbacks never carry a secret, and a CommandNotifier whose message is larger
than the OS lets a process's arguments be still runs, with the message cut and saying so."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rota import CallbackContext, CommandNotifier, Flow, PythonTask, Secret, WebhookNotifier
from rota.engine.report import RunSummary
from rota.engine.runner import FlowRef, Runner
from rota.executors.base import Executor
from rota.executors.pool import LocalPoolExecutor
from rota.executors.threads import InProcessExecutor
from rota.model.dag import Dag
from rota.model.schedule import SystemClock
from rota.model.states import TaskState
from rota.notifiers import LINUX_MAX_ARG_STRLEN, fit_environment, truncate_bytes
from rota.store.sql import SqlStore, open_store
from webhook_sink import Hook

TOKEN = "tok-hunter2-XYZ"
DB_PW = "pw-s3cr3t-ABC"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    with open_store(f"sqlite:///{tmp_path}/rota.db") as s:
        yield s


def run(store: SqlStore, dag: Dag, tmp_path: Path, kind: str = "inprocess") -> RunSummary:
    ex: Executor = (
        LocalPoolExecutor(2, str(tmp_path / "logs")) if kind == "local" else InProcessExecutor()
    )
    try:
        return Runner(store, ex, home=tmp_path, clock=SystemClock()).run(dag, FlowRef(dag.name))
    finally:
        ex.close()


def reject(api_token: str, password: str) -> None:
    raise ValueError(f"rejected {api_token} with {password}")


def page_with_token(ctx: CallbackContext) -> None:
    raise RuntimeError(f"could not page run {ctx.run_id} with {TOKEN}")


def secret_flow(*notifiers: Any) -> Dag:
    params = {"api_token": TOKEN, "db": {"host": "h", "password": Secret("DB_PASSWORD")}}
    with Flow(
        "noisy", params=params, on_failure=list(notifiers), on_run_failure=list(notifiers)
    ) as f:
        PythonTask("reject", reject, args=(TOKEN, Secret("DB_PASSWORD")))
    return f.build()


@pytest.mark.parametrize("kind", ["inprocess", "local"])
def test_webhook_bodies_hold_no_secret(
    store: SqlStore, tmp_path: Path, hook: Hook, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_PASSWORD", DB_PW)
    summary = run(store, secret_flow(WebhookNotifier(hook.url)), tmp_path, kind)
    assert summary.tasks["reject"].state is TaskState.FAILED
    assert len(hook.raw_bodies()) == 2  # the task's failure and the run's
    for raw in hook.raw_bodies():
        assert TOKEN.encode() not in raw and DB_PW.encode() not in raw
        body = json.loads(raw)
        assert body["params"]["api_token"] == "***"
        assert "'password': '***'" in body["params"]["db"]
    task_body = next(
        json.loads(b) for b in hook.raw_bodies() if json.loads(b)["event"] == "failure"
    )
    assert task_body["error_message"] == "rejected *** with ***"


def test_command_notifier_env_and_stdin_hold_no_secret(
    store: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_PASSWORD", DB_PW)
    out = tmp_path / "notified"
    out.mkdir()
    monkeypatch.setenv("NOTIFY_DIR", str(out))
    notifier = CommandNotifier(
        'env | grep "^ROTA_" > "$NOTIFY_DIR/$ROTA_EVENT.env"; cat > "$NOTIFY_DIR/$ROTA_EVENT.json"'
    )
    run(store, secret_flow(notifier), tmp_path)
    assert sorted(p.name for p in out.iterdir()) == [
        "failure.env",
        "failure.json",
        "run_failure.env",
        "run_failure.json",
    ]
    for path in out.iterdir():
        data = path.read_bytes()
        assert TOKEN.encode() not in data and DB_PW.encode() not in data, path.name
    assert "ROTA_ERROR=rejected *** with ***" in (out / "failure.env").read_text()
    assert json.loads((out / "failure.json").read_text())["params"]["api_token"] == "***"


def test_a_failing_callback_leaves_no_secret_in_the_callbacks_log(
    store: SqlStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DB_PASSWORD", DB_PW)
    summary = run(store, secret_flow(page_with_token), tmp_path)
    log = (tmp_path / "logs" / summary.run_id / "callbacks.log").read_text()
    assert log.count("RuntimeError: could not page run") == 2
    assert TOKEN not in log and "with ***" in log
    assert TOKEN not in capfd.readouterr().err  # the one-line notice on stderr too


# --- CommandNotifier and the OS's argument limit -----------------------------------------------


def huge_context(message_bytes: int = 300_000, traceback_bytes: int = 200_000) -> CallbackContext:
    return CallbackContext(
        event="failure",
        run_id="r1",
        flow="f",
        state="failed",
        task_id="t",
        error_type="ValueError",
        error_message="E" * (message_bytes - 3) + "END",
        traceback="T" * traceback_bytes,
    )


def notify_into(folder: Path) -> CommandNotifier:
    return CommandNotifier(
        f'printf %s "$ROTA_ERROR" > {folder}/error; printf %s "$ROTA_TRACEBACK" > {folder}/tb; '
        f"cat > {folder}/stdin.json"
    )


def test_a_message_past_the_per_string_limit_is_cut_and_says_so(tmp_path: Path) -> None:
    notify_into(tmp_path)(huge_context())
    error = (tmp_path / "error").read_bytes()
    assert error.startswith(b"EEEE")
    assert b"[rota: truncated to fit the OS argument limit; 300000 bytes in all]" in error
    assert len(b"ROTA_ERROR=" + error) < LINUX_MAX_ARG_STRLEN
    tb = (tmp_path / "tb").read_bytes()
    assert tb.startswith(b"TTTT") and tb.endswith(b"200000 bytes in all]")
    # stdin has no such limit: it keeps the whole message
    assert json.loads((tmp_path / "stdin.json").read_text())["error_message"].endswith("END")


def test_a_large_environment_leaves_the_message_what_room_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fill the environment until only ~50 KB of the limit are left for the message
    used = sum(len(k) + len(v) + 10 for k, v in os.environ.items())
    to_fill = os.sysconf("SC_ARG_MAX") - 50_000 - used
    for i in range(to_fill // 100_000 + 1):
        monkeypatch.setenv(f"ROTA_TEST_FILLER_{i}", "f" * min(100_000, to_fill - i * 100_000))
    notify_into(tmp_path)(huge_context(message_bytes=100_000))
    error = (tmp_path / "error").read_bytes()
    assert error.startswith(b"EEEE") and error.endswith(b"100000 bytes in all]")
    assert len(error) < 50_000


def test_fit_environment_gives_room_in_order_and_never_splits_a_character() -> None:
    fields = {"A": "é" * 100_000, "B": "b" * 10}
    cut = fit_environment(["bash", "-c", "true"], {}, fields, budget=1001)
    assert len(cut["A"].encode()) <= 1001 and cut["A"].startswith("é")
    assert cut["B"] == "b" * 10
    assert truncate_bytes("short", 10) == "short"
    assert truncate_bytes("x" * 50, 5) == truncate_bytes("y" * 50, 5)  # only the note fits


def explode() -> None:
    raise ValueError("x" * 300_000)


def test_a_huge_error_from_a_real_task_still_reaches_the_command(
    store: SqlStore, tmp_path: Path
) -> None:
    with Flow("huge", on_failure=notify_into(tmp_path)) as f:
        PythonTask("explode", explode)
    summary = run(store, f.build(), tmp_path, "local")
    assert summary.tasks["explode"].state is TaskState.FAILED
    error = (tmp_path / "error").read_bytes()
    assert error.startswith(b"xxxx") and b"[rota: truncated" in error
    assert not (tmp_path / "logs" / summary.run_id / "callbacks.log").exists()
