"""``SlackNotifier``: a message to a Slack channel through an incoming webhook.

Slack reads ``&``, ``<`` and ``>`` in a message as its own markup (``<!channel>`` notifies a
whole channel, ``<https://x|text>`` is a link), so every value is escaped, and error messages go
in code blocks, where ``*bold*`` and ``_italic_`` are not formatting: an error text, a parameter
or a task id is shown as it is, never acted on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from rota.model.callbacks import CallbackContext
from rota.model.secrets import Secret
from rota.notifiers import message
from rota.notifiers.webhook import check_url, post_json

_ICON = {"run_failure": ":x:", "failure": ":x:", "retry": ":warning:"}


def escape(text: str) -> str:
    """*text* with Slack's control characters as the entities Slack shows as themselves."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code_block(text: str) -> str:
    # a ``` inside would end the block early: a zero-width space keeps it literal
    return "```" + escape(text).replace("```", "`\u200b``") + "```"


def slack_text(ctx: CallbackContext) -> str:
    """The message: a headline (a link to the UI's page when there is one), then each failed
    task with its error, at most :data:`message.MAX_LISTED` of them."""
    head = escape(message.headline(ctx))
    if ctx.url:
        head = f"{head} · <{escape(ctx.url)}|open in Rota>"
    lines = [f"{_ICON.get(ctx.event, ':white_check_mark:')} {head}"]
    for failed in message.failures(ctx)[: message.MAX_LISTED]:
        tries = f" (try {failed.try_number})" if failed.try_number else ""
        lines.append(f"• {escape(failed.task_id)}{tries}")
        lines.append(_code_block(message.error_text(failed)))
    more = message.more_line(ctx)
    if more:
        lines.append(escape(more))
    return "\n".join(lines)


@dataclass(frozen=True)
class SlackNotifier:
    """Post the context to Slack: ``SlackNotifier("https://hooks.slack.com/services/...")``.

    The body is Slack's incoming-webhook message, ``{"text": ...}``: the run, the task, each
    failed task's error, and a link to the run's page in the web UI when ``ROTA_UI_URL`` is set.
    Anyone holding a webhook URL can post to its channel: give it as ``rota.Secret("VAR")`` to
    keep it out of flow files (it is read from ``$VAR`` when a message is sent, and never shown).

    Raises (when called):
        urllib.error.URLError: Slack cannot be reached or refuses the message.
        SecretNotSet: the URL's variable is not set.
    """

    webhook_url: str | Secret = field(repr=False)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.webhook_url, Secret):
            check_url(self.webhook_url, "Slack webhook url")

    def body(self, ctx: CallbackContext) -> dict[str, Any]:
        """What is posted for *ctx*."""
        return {"text": slack_text(ctx)}

    def __call__(self, ctx: CallbackContext) -> None:
        url = self.webhook_url
        if isinstance(url, Secret):
            name = url.name
            url = url.reveal(os.environ)
            check_url(url, f"the Slack webhook url in ${name}", show=False)
        post_json(url, self.body(ctx), timeout=self.timeout)
