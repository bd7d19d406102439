"""``EmailNotifier``: a plain-text email through an SMTP server (``smtplib``).

The subject names the flow, the run (or the task) and what happened; the body adds each failed
task with its error, the parameters (secrets ``***``) and a link to the web UI when
``ROTA_UI_URL`` is set. Headers are built by :mod:`email.message`, which refuses a line break in
a header, so no value can add a header or a recipient.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rota.errors import DefinitionError
from rota.model.callbacks import CallbackContext
from rota.model.secrets import Secret
from rota.notifiers import message

if TYPE_CHECKING:  # imported when an email is sent, not with `import rota`
    import smtplib
    import ssl
    from email.message import EmailMessage


def _addresses(value: str | Iterable[str]) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value)
    if not items:
        raise DefinitionError("EmailNotifier needs at least one address in to=")
    for item in items:
        if not isinstance(item, str) or "@" not in item or any(c in item for c in "\r\n,;"):
            raise DefinitionError(f"not one email address: {item!r}")
    return items


def email_subject(ctx: CallbackContext, prefix: str) -> str:
    """``[rota] run R of flow F failed``."""
    subject = f"{prefix} {message.headline(ctx)}".strip()
    return " ".join(subject.split())  # one line whatever a value holds


def email_body(ctx: CallbackContext) -> str:
    """The plain-text body: the headline, the failed tasks and their errors, the link."""
    lines = [message.headline(ctx) + ".", ""]
    shown = message.failures(ctx)[: message.MAX_LISTED]
    if shown:
        lines.append("Failed tasks:" if ctx.is_run_event else "Error:")
        for failed in shown:
            tries = f" (try {failed.try_number})" if failed.try_number else ""
            lines.append(f"  {failed.task_id}{tries}: {message.error_text(failed)}")
        more = message.more_line(ctx)
        if more:
            lines.append(f"  {more}")
        lines.append("")
    if ctx.traceback and not ctx.is_run_event:
        lines += ["Traceback:", ctx.traceback.rstrip(), ""]
    if ctx.url:
        lines += [f"Open in Rota: {ctx.url}", ""]
    if ctx.params:
        params = ", ".join(f"{k}={v!r}" for k, v in ctx.params.items())
        lines += [f"Parameters: {params}", ""]
    lines.append(f"Run {ctx.run_id}: `rota runs show {ctx.run_id}`")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class EmailNotifier:
    """Email the context: ``EmailNotifier(to="team@example.com", host="smtp.example.com")``.

    Args:
        to: one address or several.
        sender: the From address (default ``rota@<this host>``).
        host: the SMTP server's name (default ``localhost``).
        port: the SMTP server's port (default 25).
        username: log in first with this name and *password*.
        password: a ``rota.Secret("VAR")`` or text; it is never shown in a ``repr``.
        starttls: upgrade the connection with STARTTLS before logging in.
        use_ssl: connect over TLS from the start (SMTPS, usually port 465).
        timeout: seconds to wait for the server.
        subject_prefix: put before every subject.

    Raises (when called):
        smtplib.SMTPException, OSError: the server cannot be reached or refuses the message.
        SecretNotSet: the password's variable is not set.
    """

    to: str | Iterable[str]
    sender: str | None = None
    host: str = "localhost"
    port: int = 25
    username: str | None = None
    password: str | Secret | None = field(default=None, repr=False)
    starttls: bool = False
    use_ssl: bool = False
    timeout: float = 10.0
    subject_prefix: str = "[rota]"
    recipients: tuple[str, ...] = field(init=False, repr=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipients", _addresses(self.to))
        if self.sender is not None:
            _addresses(self.sender)
        if self.starttls and self.use_ssl:
            raise DefinitionError("EmailNotifier: give starttls=True or use_ssl=True, not both")

    def message(self, ctx: CallbackContext) -> EmailMessage:
        """The email sent for *ctx*."""
        from email.message import EmailMessage
        from email.utils import formatdate, make_msgid

        msg = EmailMessage()
        msg["Subject"] = email_subject(ctx, self.subject_prefix)
        msg["From"] = self.sender or f"rota@{socket.getfqdn()}"
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = make_msgid(domain="rota.local")
        msg.set_content(email_body(ctx))
        return msg

    def __call__(self, ctx: CallbackContext) -> None:
        import ssl

        msg = self.message(ctx)
        context = ssl.create_default_context()
        with self._connect(context) as smtp:
            if self.starttls:
                smtp.starttls(context=context)
            if self.username is not None:
                smtp.login(self.username, self._password())
            smtp.send_message(msg, to_addrs=list(self.recipients))

    def _connect(self, context: ssl.SSLContext) -> smtplib.SMTP:
        import smtplib

        if self.use_ssl:
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)

    def _password(self) -> str:
        if isinstance(self.password, Secret):
            return self.password.reveal(os.environ)
        return self.password or ""
