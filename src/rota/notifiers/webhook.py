"""``WebhookNotifier``: the callback context POSTed as JSON; and the POST other notifiers share."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rota.errors import DefinitionError
from rota.model.callbacks import CallbackContext


def check_url(url: object, what: str = "webhook url", *, show: bool = True) -> None:
    """Refuse a URL that is not http:// or https:// (a ``file:`` URL would be read, not posted);
    the error shows it unless *show* is False (a URL read from a secret).

    Raises:
        DefinitionError: it is not.
    """
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        shown = f": {url!r}" if show and isinstance(url, str) else ""
        raise DefinitionError(f"{what} must start with http:// or https://{shown}")


def post_json(
    url: str, body: Any, *, headers: Mapping[str, str] | None = None, timeout: float = 10.0
) -> bytes:
    """POST *body* as JSON to *url*; the answer's bytes.

    Raises:
        urllib.error.URLError: the server cannot be reached or answers with an error status.
    """
    data = json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(url, data=data, headers=sent, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer: bytes = response.read()
    return answer


@dataclass(frozen=True)
class WebhookNotifier:
    """POST ``{"event", "run_id", "flow", "task_id", "state", "error_message", "failed_tasks",
    "url", ...}`` (:meth:`CallbackContext.to_json`) to *url*.

    Raises (when called):
        urllib.error.URLError: the server cannot be reached or answers with an error status.
    """

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        check_url(self.url)

    def __call__(self, ctx: CallbackContext) -> None:
        post_json(self.url, ctx.to_json(), headers=self.headers, timeout=self.timeout)
