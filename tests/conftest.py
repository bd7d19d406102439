"""Fixtures shared by the whole test suite: real backing services, started once per session."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# --- PostgreSQL: a real server per test session (initdb + pg_ctl as the postgres user) --------


def _postgres_bindir() -> Path:
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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Start a throw-away PostgreSQL server on 127.0.0.1; yield its base URL (no database)."""
    bindir = _postgres_bindir()
    base = Path(tempfile.mkdtemp(prefix="rota-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    datadir, port = base / "data", _free_port()
    initdb = [bindir / "initdb", "-D", datadir, "-A", "trust", "-U", "postgres", "-E", "UTF8"]
    _run(_as_postgres(*initdb, "--no-sync"))
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off"
    pg_ctl = [bindir / "pg_ctl", "-D", datadir]
    _run(_as_postgres(*pg_ctl, "-o", options, "-l", base / "log", "-w", "start"))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/"
    finally:
        subprocess.run(
            _as_postgres(*pg_ctl, "-m", "fast", "-w", "stop"), capture_output=True, check=False
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_database_factory(postgres_server: str) -> Callable[[], str]:
    """A function that creates a fresh, empty database on the session's server; returns its URL."""
    import psycopg  # only tests that use PostgreSQL need the driver
    from psycopg import sql

    numbers = itertools.count()
    port = int(postgres_server.rsplit(":", 1)[1].rstrip("/"))
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"

    def new_database() -> str:
        name = f"rota_test_{next(numbers)}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return f"{postgres_server}{name}"

    return new_database


@pytest.fixture
def postgres_url(postgres_database_factory: Callable[[], str]) -> str:
    """A fresh, empty database on the session's PostgreSQL server; its URL (~0.25 s each)."""
    return postgres_database_factory()


# --- a webhook's far end: a real HTTP server on 127.0.0.1 (tests/webhook_sink.py) ------------


@pytest.fixture
def hook() -> Iterator[Any]:
    """A running :class:`webhook_sink.Hook` that records every POST; closed after the test."""
    from webhook_sink import Hook

    h = Hook()
    yield h
    h.close()
