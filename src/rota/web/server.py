"""Serving the UI: ``rota ui`` opens the store, makes or reads the token, and runs uvicorn."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

from rota.config import Settings
from rota.store.base import Store
from rota.store.sql import SqlStore
from rota.web.access import load_or_create, token_path
from rota.web.actions import Actions
from rota.web.context import WebContext

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8570


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on *host*:*port* (port 0: one the system picks).

    Raises:
        OSError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def serve(
    settings: Settings,
    store: Store,
    *,
    host: str,
    port: int,
    flows_dir: Path | None,
    say: Callable[[str], None],
) -> None:
    """Serve until interrupted; the first start of a home makes and prints its token."""
    import uvicorn

    from rota.web.app import create_app

    token, made = load_or_create(settings.home)
    actions = Actions(settings, flows_dir)
    ctx = WebContext(settings, cast(SqlStore, store), token, actions, flows_dir)
    app = create_app(ctx)
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/"
    say(f"rota ui: serving {url} (log in with the token; API: Authorization: Bearer TOKEN)")
    if made:
        say(f"rota ui: token (shown once; kept in {token_path(settings.home)}): {token}")
    else:
        say(f"rota ui: the token is in {token_path(settings.home)}")
    if host not in ("127.0.0.1", "::1", "localhost"):
        say(f"rota ui: listening on {host}: whoever reaches it with the token can steer runs")
    reaper = threading.Thread(target=_reap, args=(actions,), name="rota-ui-reaper", daemon=True)
    reaper.start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        actions.close()
        sock.close()


def _reap(actions: Actions) -> None:
    import time

    while True:
        actions.reap()
        time.sleep(1.0)
