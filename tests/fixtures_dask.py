"""A real Dask cluster for tests: ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1.

Started once per session (the workers with a nanny, one thread each, no dashboard); nothing
listens beyond the loopback. The workers inherit the S3 test server's variables, so they reach
it as the engine does. Use it with ``from fixtures_dask import dask_cluster  # noqa: F401``
(with ``from fixtures_s3 import s3_server  # noqa: F401``) in a test module.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

WORKERS = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DaskCluster:
    """The session's cluster: its scheduler's address, and a client for looking at it."""

    address: str
    client: Any
    home: Path
    """The workers' HOME (what an ML example deploys to when given no folder)."""

    def processing(self) -> dict[str, list[str]]:
        """The keys each worker (by address) is running now."""
        found = self.client.processing()
        return {addr: [str(k) for k in keys] for addr, keys in found.items()}

    def worker_pids(self) -> dict[str, int]:
        """Process id of each live worker, by address."""
        return {addr: int(pid) for addr, pid in self.client.run(os.getpid).items()}

    def wait_for_workers(self, n: int = WORKERS, timeout: float = 60) -> None:
        """Wait until *n* workers are connected (a killed one is restarted by its nanny)."""
        self.client.wait_for_workers(n, timeout=timeout)


def _dask_command() -> str:
    found = Path(sys.executable).parent / "dask"
    if not found.exists():
        pytest.fail("the dask command is not installed: pip install 'rota[dask]'", pytrace=False)
    return str(found)


@contextlib.contextmanager
def start_cluster(
    *, nanny: bool = True, workers: int = WORKERS, env: dict[str, str] | None = None
) -> Iterator[DaskCluster]:
    """A scheduler and *workers* one-thread workers (with or without a nanny, which restarts a
    killed worker), all on 127.0.0.1 and with no dashboard, with *env* added to their
    environment; every process stopped on exit."""
    from distributed import Client

    dask = _dask_command()
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    home = Path(tempfile.mkdtemp(prefix="rota-dask-home-"))
    env = {**os.environ, "HOME": str(home), **(env or {})}
    env.pop("ROTA_HOME", None)
    log = (home / "cluster.log").open("ab")
    common = ["--host", "127.0.0.1", "--no-dashboard"]
    spawn = functools.partial(
        subprocess.Popen, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    procs = [spawn([dask, "scheduler", "--port", str(port), *common])]
    for i in range(workers):
        cmd = [dask, "worker", address, "--nthreads", "1", "--name", f"w{i}", *common]
        procs.append(spawn([*cmd, "--nworkers", "1"] if nanny else [*cmd, "--no-nanny"]))
    client = None
    try:
        deadline = time.monotonic() + 60
        while client is None:
            try:
                client = Client(address, timeout=5, set_as_default=False)
            except OSError:
                if time.monotonic() > deadline:
                    raise
        client.wait_for_workers(workers, timeout=60)
        yield DaskCluster(address, client, home)
    finally:
        if client is not None:
            client.close()
        for proc in reversed(procs):
            _stop(proc)
        log.close()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def dask_cluster(s3_server: str) -> Iterator[DaskCluster]:
    """The session's cluster (workers with a nanny); its workers see the S3 test server."""
    del s3_server  # started first: the workers inherit its variables
    with start_cluster() as cluster:
        yield cluster


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End *proc* and its process group (a nanny's worker, a worker's children)."""
    import signal

    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
