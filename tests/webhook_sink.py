"""A real HTTP server on 127.0.0.1 that records every POST: the webhook notifiers' far end."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Request:
    """One POST as it arrived."""

    path: str
    content_type: str | None
    token: str | None
    raw: bytes


class Hook:
    """Records every POST (its raw body included) and answers *status*."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                got = Request(
                    self.path, self.headers.get("Content-Type"), self.headers.get("X-Token"), body
                )
                with hook.lock:
                    hook.requests.append(got)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def raw_bodies(self) -> list[bytes]:
        with self.lock:
            return [r.raw for r in self.requests]

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.raw_bodies()]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
