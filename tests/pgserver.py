"""A real PostgreSQL server in a temporary folder (initdb + pg_ctl as the postgres user), on
127.0.0.1: the suite's shared one (tests/conftest.py, never stopped while tests use it) and the
servers of tests that stop and start their own (tests/sched)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _bindir() -> Path:
    """The newest installed PostgreSQL's bin folder; fails the test if there is none."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not found:
        pytest.fail(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run `make test`, "
            "which installs it (scripts/ensure-postgres.sh)",
            pytrace=False,
        )
    return Path(found[-1]).parent


def _as_postgres(*args: str | Path) -> list[str]:
    """*args* as a command run by the postgres user (initdb and pg_ctl refuse to run as root)."""
    cmd = [str(a) for a in args]
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now, never PostgreSQL's default 5432."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != 5432:
            return port


def _run(cmd: list[str]) -> None:
    """Run *cmd*; on failure fail the test with its output."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}", pytrace=False)


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
    def base_url(self) -> str:
        """The server's URL without a database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/"

    @property
    def url(self) -> str:
        return f"{self.base_url}postgres"

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
