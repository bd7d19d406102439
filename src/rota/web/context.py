"""What every request handler gets: the server's store, token, actions and templates."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from rota.config import Settings
from rota.store.sql import SqlStore
from rota.web.access import derive
from rota.web.actions import Actions


def templates() -> Environment:
    """The page templates: autoescaped (every value is data), strict about undefined names."""
    env = Environment(
        loader=PackageLoader("rota.web", "templates"),
        autoescape=select_autoescape(["html"], default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


@dataclass
class WebContext:
    """One server: one home, one store, one token."""

    settings: Settings
    store: SqlStore
    token: str
    actions: Actions
    flows_dir: Path | None = None
    env: Environment = field(default_factory=templates)
    folder: Any = None
    """The scanned flows folder (:class:`~rota.engine.flowdir.FlowFolder`), if any."""
    _scan_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    stats_cache: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)

    @property
    def session(self) -> str:
        """The session cookie's value (derived from the token; never the token itself)."""
        return derive(self.token, "session")

    @property
    def csrf(self) -> str:
        """The CSRF token every form and script POST carries."""
        return derive(self.token, "csrf")

    def scan(self) -> dict[str, Any]:
        """The flows of the flows folder (parsed in child processes), by name; {} without one."""
        if self.flows_dir is None:
            return {}
        from rota.engine.flowdir import FlowFolder

        with self._scan_lock:
            if self.folder is None:
                self.folder = FlowFolder(self.flows_dir)
            return dict(self.folder.scan().flows)


def web(request: Request) -> WebContext:
    """The server's context, from a request."""
    ctx: WebContext = request.app.state.web
    return ctx
