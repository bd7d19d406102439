"""Helpers for the web tests: a real ``rota ui`` server in a subprocess, and plain HTTP."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    """A running ``rota ui`` on 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    home: Path
    output: IO[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token(self) -> str:
        return (self.home / "ui-token").read_text().strip()

    def request(
        self,
        method: str,
        target: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        token: bool = True,
    ) -> Reply:
        """One request with a raw target (sent as written: nothing is normalised or encoded)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        sent = dict(headers or {})
        if token:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for key, value in sent.items():
                conn.putheader(key, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.output.close()


def start_ui(home: Path, log: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """Start ``rota ui --port 0`` for *home* and wait until it serves."""
    full = {**os.environ, "ROTA_HOME": str(home), "ROTA_WORKERS": "2", **(env or {})}
    full.pop("ROTA_DATABASE_URL", None)
    out = open(log, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "rota", "ui", "--port", "0", *args],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(rb"serving http://([\d.]+):(\d+)/", log.read_bytes())
        if found:
            server = Server(proc, found.group(1).decode(), int(found.group(2)), home, out)
            if _serves(server):
                return server
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    out.close()
    raise AssertionError(f"rota ui did not start:\n{log.read_text(errors='replace')}")


def _serves(server: Server) -> bool:
    try:
        return server.request("GET", "/health", token=False).status == 200
    except OSError:
        return False


def rota(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rota ARGS`` for *home*."""
    env = {**os.environ, "ROTA_HOME": str(home), "ROTA_WORKERS": "2"}
    env.pop("ROTA_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "rota", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=180, check=False,
    )  # fmt: skip
