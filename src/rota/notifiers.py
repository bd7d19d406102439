"""Built-in notifiers: callables to pass as ``on_failure=`` (or any callback) of a task or flow.

``WebhookNotifier`` POSTs the callback context as JSON; ``CommandNotifier`` runs a command with
the context in its environment and as JSON on its standard input.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

from rota.errors import DefinitionError
from rota.model.callbacks import CallbackContext


@dataclass(frozen=True)
class WebhookNotifier:
    """POST ``{"event", "run_id", "flow", "task_id", "state", "error_message", ...}`` to *url*.

    Raises (when called):
        urllib.error.URLError: the server cannot be reached or answers with an error status.
    """

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise DefinitionError(f"webhook url must start with http:// or https://: {self.url!r}")

    def __call__(self, ctx: CallbackContext) -> None:
        body = json.dumps(ctx.to_json()).encode()
        headers = {"Content-Type": "application/json", **self.headers}
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read()


@dataclass(frozen=True)
class CommandNotifier:
    """Run *command* with ``bash -c``; the context is in ``ROTA_EVENT``, ``ROTA_RUN_ID``,
    ``ROTA_FLOW``, ``ROTA_TASK_ID``, ``ROTA_STATE``, ``ROTA_ERROR`` and, as JSON, on stdin.

    Raises (when called):
        subprocess.CalledProcessError: the command exits with a non-zero code.
    """

    command: str
    timeout: float = 60.0

    def __call__(self, ctx: CallbackContext) -> None:
        env = {
            **os.environ,
            "ROTA_EVENT": ctx.event,
            "ROTA_RUN_ID": ctx.run_id,
            "ROTA_FLOW": ctx.flow,
            "ROTA_TASK_ID": ctx.task_id or "",
            "ROTA_STATE": ctx.state,
            "ROTA_ERROR": ctx.error_message or "",
        }
        subprocess.run(
            ["bash", "-c", self.command],
            input=json.dumps(ctx.to_json()).encode(),
            env=env,
            timeout=self.timeout,
            check=True,
            capture_output=True,
        )
