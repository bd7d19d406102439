"""Notifications people read: Slack's incoming-webhook body posted to a real local HTTP server,
email delivered to a real local SMTP server (aiosmtpd), and run-level callbacks that name each
failed task with its own error (a mapped instance as ``square@1``), secrets masked."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from rota import CommandNotifier, EmailNotifier, Secret, SlackNotifier, WebhookNotifier, flow, task
from rota.api import run_flow
from rota.engine.result import RunResult
from rota.model.states import RunState
from rota.testing import sandbox_settings
from webhook_sink import Hook

UI = "http://127.0.0.1:8570"


@task
def numbers() -> list[int]:
    return [0, 1, 2]


@task
def square(x: int, token: str) -> int:
    if x == 1:
        raise ValueError(f"no square for 1 <!channel> with {token}")
    return x * x


@task
def fine() -> str:
    return "ok"


def failing_flow(**callbacks: Any) -> Any:
    @flow(name="alerts", **callbacks)
    def alerts(token: str = Secret("NT_TOKEN")) -> None:
        square.map(numbers(), token=token)
        fine()

    return alerts


def run(flow_: Any, home: Path, monkeypatch: pytest.MonkeyPatch) -> RunResult:
    monkeypatch.setenv("NT_TOKEN", "hunter2-secret")
    settings = replace(sandbox_settings(home), ui_url=UI)
    return run_flow(flow_, settings=settings)


def test_slack_body_names_the_run_the_instance_its_error_and_links_to_the_ui(
    hook: Hook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notifier = SlackNotifier(hook.url)
    result = run(failing_flow(on_run_failure=notifier), tmp_path, monkeypatch)
    assert result.state is RunState.FAILED
    (body,) = hook.bodies()
    assert list(body) == ["text"]  # Slack's incoming-webhook message
    text = body["text"]
    head = text.splitlines()[0]
    assert head == (
        f":x: run {result.run_id} of flow alerts failed · <{UI}/runs/{result.run_id}|open in Rota>"
    )
    assert "• square@1 (try 1)" in text
    # the instance's own error, Slack's markup escaped, the secret masked
    assert "```ValueError: no square for 1 &lt;!channel&gt; with ***```" in text
    assert "<!channel>" not in text and "hunter2" not in text
    assert "square@0" not in text and "fine" not in text


def test_slack_task_failure_links_to_the_tasks_page(
    hook: Hook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(failing_flow(on_failure=SlackNotifier(hook.url)), tmp_path, monkeypatch)
    (body,) = hook.bodies()
    assert body["text"].startswith(
        f":x: task square@1 of flow alerts failed (try 1) in run {result.run_id} · "
        f"<{UI}/runs/{result.run_id}/tasks/square|open in Rota>"
    )


class Inbox:
    """An aiosmtpd handler keeping every message it is given."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def test_email_is_delivered_over_smtp(
    smtp: tuple[Inbox, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, port = smtp
    notifier = EmailNotifier(
        to=["ml-team@example.com", "oncall@example.com"],
        sender="rota@example.com",
        host="127.0.0.1",
        port=port,
    )
    result = run(failing_flow(on_run_failure=notifier), tmp_path, monkeypatch)
    ((sender, recipients, raw),) = inbox.received
    assert sender == "rota@example.com"
    assert recipients == ["ml-team@example.com", "oncall@example.com"]
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["Subject"] == f"[rota] run {result.run_id} of flow alerts failed"
    assert msg["To"] == "ml-team@example.com, oncall@example.com"
    part = msg.get_body(("plain",))
    assert part is not None
    body = part.get_content().replace("\r\n", "\n")
    assert (
        "Failed tasks:\n  square@1 (try 1): ValueError: no square for 1 <!channel> with ***" in body
    )
    assert f"Open in Rota: {UI}/runs/{result.run_id}" in body
    assert "Parameters: token='***'" in body
    assert "hunter2" not in raw.decode()


def test_email_refuses_an_address_that_would_add_a_header() -> None:
    from rota.errors import DefinitionError

    with pytest.raises(DefinitionError, match="not one email address"):
        EmailNotifier(to="a@example.com\r\nBcc: evil@example.com")


def test_run_callbacks_get_the_failed_tasks_and_their_errors(
    hook: Hook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "env.json"
    command = CommandNotifier(
        'python3 -c "import json, os; print(json.dumps({k: os.environ.get(k) for k in '
        "['ROTA_EVENT', 'ROTA_TASK_ID', 'ROTA_ERROR', 'ROTA_FAILED_TASKS', 'ROTA_URL']}))\" "
        f"> {out}"
    )
    seen: list[Any] = []
    callbacks = [command, WebhookNotifier(hook.url), seen.append]
    result = run(failing_flow(on_run_failure=callbacks), tmp_path, monkeypatch)
    env = json.loads(out.read_text())
    assert env == {
        "ROTA_EVENT": "run_failure",
        "ROTA_TASK_ID": "square@1",
        "ROTA_ERROR": "no square for 1 <!channel> with ***",
        "ROTA_FAILED_TASKS": "square@1",
        "ROTA_URL": f"{UI}/runs/{result.run_id}",
    }
    (posted,) = hook.bodies()
    assert posted["failed_tasks"] == [
        {
            "task_id": "square@1",
            "try_number": 1,
            "error_type": "ValueError",
            "error_message": "no square for 1 <!channel> with ***",
        }
    ]
    (ctx,) = seen
    assert ctx.task_id == "square@1" and ctx.error_type == "ValueError"
    assert [f.task_id for f in ctx.failed_tasks] == ["square@1"]


def test_a_ui_url_that_is_not_http_is_a_config_error() -> None:
    from rota.config import Settings
    from rota.errors import ConfigError

    with pytest.raises(ConfigError, match="ROTA_UI_URL must start with http:// or https://"):
        Settings.from_env({"ROTA_HOME": "/nonexistent-rota-home", "ROTA_UI_URL": "javascript:x"})
    ok = Settings.from_env({"ROTA_HOME": "/nonexistent-rota-home", "ROTA_UI_URL": UI + "/"})
    assert ok.ui_url == UI
