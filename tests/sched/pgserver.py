"""A PostgreSQL server of one test's own, which the test may stop and start again (the suite's
shared server in tests/conftest.py must never be stopped while other tests use it)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    assert found, "PostgreSQL is not installed: run scripts/ensure-postgres.sh"
    return Path(found[-1]).parent


def _as_postgres(*args: str | Path) -> list[str]:
    cmd = [str(a) for a in args]
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != 5432:
            return port


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}"


class PgServer:
    """initdb in a temporary folder; start() and stop() as often as a test likes; remove()."""

    def __init__(self) -> None:
        self.bindir = _bindir()
        self.base = Path(tempfile.mkdtemp(prefix="rota-pg-own-"))
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
        self.data = self.base / "data"
        self.port = _free_port()
        initdb = [self.bindir / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres"]
        _run(_as_postgres(*initdb, "-E", "UTF8", "--no-sync"))
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base} -c fsync=off"
        pg_ctl = [self.bindir / "pg_ctl", "-D", self.data, "-o", options]
        _run(_as_postgres(*pg_ctl, "-l", self.base / "log", "-w", "start"))
        self.running = True

    def stop(self) -> None:
        """Stop at once: sessions are ended, as in a crash of the database host's service."""
        _run(_as_postgres(self.bindir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"))
        self.running = False

    def remove(self) -> None:
        if self.running:
            subprocess.run(
                _as_postgres(self.bindir / "pg_ctl", "-D", self.data, "-m", "immediate", "stop"),
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.base, ignore_errors=True)
