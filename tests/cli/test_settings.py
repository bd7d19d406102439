"""Bad settings and unreachable stores: one line on stderr, no traceback, and no hang.

Each case runs the real ``rota`` command in a subprocess: bad ``ROTA_*`` values and database URLs
(exit 2, nothing stored), PostgreSQL without its driver (a ``psycopg`` that fails to import
shadows the real one, as on a machine without the extra), a server that accepts connections and
never answers (the connect timeout), and a statement stuck behind a lock (the statement timeout).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from clihelp import Result, rota_env

from rota.config import Settings
from rota.errors import ConfigError, StoreError
from rota.store.sql import open_store


def _rota(home: Path, *args: str, extra_path: str = "", **env: str) -> Result:
    full = {**rota_env(home), **env}  # rota_env drops ROTA_DATABASE_URL; some tests set it
    if extra_path:
        full["PYTHONPATH"] = extra_path + ":" + full.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "rota", *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=home.parent,
        timeout=60,  # what these tests are about: without the fix, some of these never return
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _one_line(result: Result) -> str:
    assert "Traceback" not in result.err, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"ROTA_WORKERS": "abc"}, "ROTA_WORKERS must be an integer, got 'abc'"),
        ({"ROTA_WORKERS": "-3"}, "ROTA_WORKERS must be >= 0 (0: one per CPU), got -3"),
        ({"ROTA_EXECUTOR": "gpu"}, "ROTA_EXECUTOR must be one of local, threads, inprocess, dask"),
        ({"ROTA_DB_CONNECT_TIMEOUT": "soon"}, "ROTA_DB_CONNECT_TIMEOUT must be a number"),
        ({"ROTA_DB_STATEMENT_TIMEOUT": "-1"}, "ROTA_DB_STATEMENT_TIMEOUT must be seconds >= 0"),
        (
            {"ROTA_DATABASE_URL": "postgresql://u:secret@127.0.0.1:abc/db"},
            "invalid database URL postgresql://u:***@127.0.0.1:abc/db",
        ),
        (
            {"ROTA_DATABASE_URL": "postgresql://u@127.0.0.1:99999/db"},
            "port 99999 is not between 1 and 65535",
        ),
        ({"ROTA_DATABASE_URL": "mysql://u@h/db"}, "Rota stores runs in SQLite or PostgreSQL"),
        ({"ROTA_HEARTBEAT_TIMEOUT": "0.5"}, "ROTA_HEARTBEAT_TIMEOUT must be seconds >= 1"),
        ({"ROTA_HOSTNAME": "node:7"}, "ROTA_HOSTNAME must be a host name without ':'"),
    ],
    ids=[
        "workers",
        "negative-workers",
        "executor",
        "timeout",
        "statement",
        "port",
        "range",
        "db",
        "heartbeat",
        "hostname",
    ],
)
def test_bad_settings_are_one_line_exit_2_and_store_nothing(
    tmp_path: Path, env: dict[str, str], needle: str
) -> None:
    home = tmp_path / "home"
    result = _rota(home, "runs", "list", **env)
    assert result.code == 2, (result.code, result.err)
    line = _one_line(result)
    assert needle in line and "secret" not in line, line
    assert not (home / "rota.db").exists()


def test_help_works_whatever_the_settings(tmp_path: Path) -> None:
    result = _rota(tmp_path / "home", "--help", ROTA_WORKERS="abc")
    assert result.code == 0, result.err
    assert "runs" in result.out


def test_rota_run_with_a_bad_setting_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    flow = tmp_path / "f.py"
    flow.write_text("from rota import flow, task\n@task\ndef t(): pass\n@flow\ndef f():\n    t()\n")
    result = _rota(tmp_path / "home", "run", str(flow), ROTA_EXECUTOR="gpu")
    assert result.code == 2
    assert "ROTA_EXECUTOR must be one of local, threads, inprocess, dask; got 'gpu'" in _one_line(
        result
    )


def test_a_postgresql_url_without_psycopg_says_how_to_install_it(tmp_path: Path) -> None:
    shadow = tmp_path / "no-psycopg" / "psycopg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("no module named psycopg (test)")\n')
    result = _rota(
        tmp_path / "home",
        "runs",
        "list",
        extra_path=str(shadow.parent),
        ROTA_DATABASE_URL="postgresql://rota:secret@127.0.0.1:5999/rota",
    )
    assert result.code == 2, (result.code, result.err)
    line = _one_line(result)
    assert "pip install 'rota[postgres]'" in line and "secret" not in line, line


# --- a server that accepts connections and never answers -----------------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def test_a_server_that_never_answers_gives_one_line_after_the_connect_timeout(
    tmp_path: Path, silent_server: int
) -> None:
    url = f"postgresql://rota@127.0.0.1:{silent_server}/rota"
    result = _rota(
        tmp_path / "home", "runs", "list", ROTA_DATABASE_URL=url, ROTA_DB_CONNECT_TIMEOUT="2"
    )
    assert result.code == 1, (result.code, result.err)
    line = _one_line(result)
    assert f"127.0.0.1:{silent_server}" in line and "timeout" in line, line


def test_open_store_applies_the_connect_timeout(silent_server: int) -> None:
    with pytest.raises(StoreError, match="timeout"):
        open_store(f"postgresql://rota@127.0.0.1:{silent_server}/rota", connect_timeout=2)


# --- a statement stuck behind a lock, on the suite's real PostgreSQL ------------------------


@pytest.mark.postgres
def test_a_statement_stuck_behind_a_lock_is_cancelled_after_the_statement_timeout(
    tmp_path: Path, postgres_url: str
) -> None:
    import psycopg

    with open_store(postgres_url):
        pass  # the schema exists
    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as locker:
        locker.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")  # held until the end
        result = _rota(
            tmp_path / "home",
            "runs",
            "list",
            ROTA_DATABASE_URL=postgres_url,
            ROTA_DB_STATEMENT_TIMEOUT="0.5",
        )
        locker.rollback()
    assert result.code == 1, (result.code, result.err)
    assert "statement timeout" in _one_line(result)


@pytest.mark.postgres
def test_the_statement_timeout_reaches_the_server(postgres_url: str) -> None:
    with open_store(postgres_url, statement_timeout=1.5) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "1500ms"
    with open_store(postgres_url) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "0"


# --- Settings themselves ---------------------------------------------------------------------


def test_settings_read_the_heartbeat_timeout_and_the_machine_name() -> None:
    plain = Settings.from_env({"HOME": "/nowhere"})
    assert (plain.heartbeat_timeout, plain.hostname) == (60.0, "")
    set_ = Settings.from_env({"ROTA_HEARTBEAT_TIMEOUT": "8", "ROTA_HOSTNAME": " node-b "})
    assert (set_.heartbeat_timeout, set_.hostname) == (8.0, "node-b")
    for bad in ("inf", "nan", "0", "soon"):
        with pytest.raises(ConfigError, match="ROTA_HEARTBEAT_TIMEOUT"):
            Settings.from_env({"ROTA_HEARTBEAT_TIMEOUT": bad})


def test_foreground_runs_renew_their_lease_as_the_heartbeat_timeout_asks() -> None:
    from datetime import timedelta

    from rota.engine.session import runner_options

    settings = Settings.from_env({"ROTA_HEARTBEAT_TIMEOUT": "24", "ROTA_HOSTNAME": "node-b"})
    options = runner_options(settings)
    assert options.stale_after == timedelta(seconds=24)
    assert options.heartbeat_every == 2.0  # a twelfth of the timeout
    assert options.host == "node-b"
    assert runner_options(Settings.from_env({"HOME": "/nowhere"})).host is None


def test_settings_read_the_timeouts_with_a_10_s_connect_default() -> None:
    plain = Settings.from_env({"HOME": "/nowhere"})
    assert (plain.db_connect_timeout, plain.db_statement_timeout) == (10.0, 0.0)
    set_ = Settings.from_env({"ROTA_DB_CONNECT_TIMEOUT": "2.5", "ROTA_DB_STATEMENT_TIMEOUT": "30"})
    assert (set_.db_connect_timeout, set_.db_statement_timeout) == (2.5, 30.0)
    for bad in ("inf", "nan", "-1", "ten"):
        with pytest.raises(ConfigError, match="ROTA_DB_CONNECT_TIMEOUT"):
            Settings.from_env({"ROTA_DB_CONNECT_TIMEOUT": bad})
