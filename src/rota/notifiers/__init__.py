"""Built-in notifiers: callables to pass as ``on_failure=`` (or any callback) of a task or flow.

``WebhookNotifier`` POSTs the callback context as JSON; ``CommandNotifier`` runs a command with
the context in its environment and as JSON on its standard input; ``SlackNotifier`` posts a
message to a Slack incoming webhook; ``EmailNotifier`` sends an email over SMTP. Each sends what
the :class:`~rota.model.callbacks.CallbackContext` holds, in which secrets are ``***`` already;
for a run's end that includes every failed task and its error.
"""

from rota.notifiers.command import (
    LINUX_MAX_ARG_STRLEN,
    CommandNotifier,
    arg_limits,
    fit_environment,
    truncate_bytes,
)
from rota.notifiers.email import EmailNotifier
from rota.notifiers.slack import SlackNotifier
from rota.notifiers.webhook import WebhookNotifier

__all__ = [
    "LINUX_MAX_ARG_STRLEN",
    "CommandNotifier",
    "EmailNotifier",
    "SlackNotifier",
    "WebhookNotifier",
    "arg_limits",
    "fit_environment",
    "truncate_bytes",
]
