"""A Kubernetes pod task through ``rota run`` and ``rota resume``, against the fake API server.

The runner is a real ``rota`` process with its own SQLite store; the cluster is ``k8sfake``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kubernetes")

from k8sfake import FakeKubernetes, serve

FLOW = """
import os
from rota import Flow, task
from rota.operators.kubernetes import KubernetesPodTask


@task
def after(line: str) -> str:
    return "python saw " + line


with Flow("podflow") as podflow:
    pod = KubernetesPodTask(
        "pod", "busybox", ["sh", "-c", "test -e ok || sleep 60; echo pod-done"],
        config_file=os.environ["FAKE_KUBECONFIG"], poll_interval=0.05,
    )
    after(pod)
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeKubernetes, Path]]:
    work = tmp_path / "kubelet"
    work.mkdir()
    with serve(work) as pair:
        yield pair


def _env(tmp_path: Path, kubeconfig: Path) -> dict[str, str]:
    env = {**os.environ, "ROTA_HOME": str(tmp_path / "home"), "FAKE_KUBECONFIG": str(kubeconfig)}
    env.pop("ROTA_DATABASE_URL", None)
    return env


def _rota(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rota", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _last_json(out: str) -> Any:
    return json.loads(out.strip().splitlines()[-1])


def test_rota_run_runs_the_pod_and_passes_its_output_on(
    cluster: tuple[FakeKubernetes, Path], tmp_path: Path
) -> None:
    fake, kubeconfig = cluster
    (fake.workdir / "ok").touch()
    path = tmp_path / "podflow.py"
    path.write_text(FLOW)
    env = _env(tmp_path, kubeconfig)
    done = _rota(env, "run", str(path), "--json")
    assert done.returncode == 0, done.stderr
    summary = _last_json(done.stdout)
    assert summary["state"] == "success"
    assert summary["tasks"]["after"]["state"] == "success"
    shown_out = _rota(env, "outputs", "show", summary["run_id"], "after")
    assert "python saw pod-done" in shown_out.stdout, shown_out.stderr
    assert fake.pods == {} and len(fake.deleted) == 1
    shown = _rota(env, "tasks", "logs", "--last", "podflow", "pod")
    assert "pod-done" in shown.stdout + shown.stderr


def _children(pid: int) -> list[int]:
    """The processes *pid* started (its pool's workers), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _crash(runner: subprocess.Popen[bytes]) -> None:
    """End the runner and its workers at once, as a machine's crash or the OOM killer would:
    the workers are frozen first, so none sees its runner die and deletes its pod."""
    workers = _children(runner.pid)
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=60)
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_sigkilled_runner_s_worker_deletes_its_pod(
    cluster: tuple[FakeKubernetes, Path], tmp_path: Path
) -> None:
    """A runner killed with SIGKILL: its worker sees its lifeline end and deletes the pod."""
    fake, kubeconfig = cluster
    path = tmp_path / "podflow.py"
    path.write_text(FLOW)
    runner = subprocess.Popen(
        [sys.executable, "-m", "rota", "run", str(path)],
        env=_env(tmp_path, kubeconfig),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        limit = time.monotonic() + 120
        while not any(p.proc is not None for p in list(fake.pods.values())):
            assert runner.poll() is None and time.monotonic() < limit, "the pod never started"
            time.sleep(0.05)
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=60)
    limit = time.monotonic() + 60
    while fake.pods:
        assert time.monotonic() < limit, "the worker did not delete the pod"
        time.sleep(0.05)
    (pod,) = fake.deleted
    assert pod.killed


def test_a_pod_left_by_a_crashed_runner_is_deleted_by_resume(
    cluster: tuple[FakeKubernetes, Path], tmp_path: Path
) -> None:
    fake, kubeconfig = cluster
    path = tmp_path / "podflow.py"
    path.write_text(FLOW)
    env = _env(tmp_path, kubeconfig)
    runner = subprocess.Popen(
        [sys.executable, "-m", "rota", "run", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        limit = time.monotonic() + 120
        while not any(p.proc is not None for p in list(fake.pods.values())):
            assert runner.poll() is None and time.monotonic() < limit, "the pod never started"
            time.sleep(0.05)
    finally:
        _crash(runner)
    (left,) = fake.pods.values()  # the runner and its worker died; its pod did not
    assert left.proc is not None and left.proc.poll() is None
    (fake.workdir / "ok").touch()
    resumed = _rota(env, "resume", "--last", "podflow", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert _last_json(resumed.stdout)["state"] == "success"
    assert left in fake.deleted and left.killed
    assert fake.pods == {}
    # the leftover was deleted before the new attempt's pod was made
    deletes = [i for i, (m, p) in enumerate(fake.requests) if m == "DELETE" and left.name in p]
    creates = [i for i, (m, _) in enumerate(fake.requests) if m == "POST"]
    assert len(creates) == 2 and deletes[0] < creates[1]


def test_a_cancelled_run_deletes_its_running_pod_at_once(
    cluster: tuple[FakeKubernetes, Path], tmp_path: Path
) -> None:
    """``rota runs cancel``: the runner ends its busy worker with SIGTERM, which deletes the pod
    (not left for a resume to find)."""
    fake, kubeconfig = cluster
    path = tmp_path / "podflow.py"
    path.write_text(FLOW)
    env = _env(tmp_path, kubeconfig)
    runner = subprocess.Popen(
        [sys.executable, "-m", "rota", "run", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        limit = time.monotonic() + 120
        while not any(p.proc is not None for p in list(fake.pods.values())):
            assert runner.poll() is None and time.monotonic() < limit, "the pod never started"
            time.sleep(0.05)
        run_id = _last_json(_rota(env, "runs", "list", "--json").stdout)[0]["run_id"]
        cancelled = _rota(env, "runs", "cancel", run_id)
        assert cancelled.returncode == 0, cancelled.stderr
        runner.wait(timeout=120)
    finally:
        runner.kill()
        runner.wait()
    assert fake.pods == {}
    (pod,) = fake.deleted
    assert pod.killed  # it was running when it was deleted
    shown = _last_json(_rota(env, "runs", "show", run_id, "--json").stdout)
    assert shown["tasks"]["pod"]["state"] == "failed"


SLOW = """
import os
from rota import Flow
from rota.operators.kubernetes import KubernetesPodTask

with Flow("slowpod") as slowpod:
    KubernetesPodTask(
        "slow", "busybox", ["sleep", "60"], timeout=10,
        config_file=os.environ["FAKE_KUBECONFIG"], poll_interval=0.05,
    )
"""


@pytest.fixture
def eager_cluster(tmp_path: Path) -> Iterator[tuple[FakeKubernetes, Path]]:
    """A fake whose kubelet starts a pod's container at the first read of its status."""
    work = tmp_path / "kubelet"
    work.mkdir()
    with serve(work, pending_reads=0) as pair:
        yield pair


@pytest.mark.parametrize("executor", ["local", "threads", "inprocess"])
def test_a_pod_past_the_task_timeout_is_deleted_under_rota_run(
    eager_cluster: tuple[FakeKubernetes, Path], tmp_path: Path, executor: str
) -> None:
    """In a pool worker the engine's SIGTERM at the deadline deletes it; in process, the wait.

    The timeout leaves time to import the client and create the pod on a loaded machine, and
    the container starts at once, so it is running when the deadline deletes its pod.
    """
    fake, kubeconfig = eager_cluster
    path = tmp_path / "slowpod.py"
    path.write_text(SLOW)
    env = {**_env(tmp_path, kubeconfig), "ROTA_EXECUTOR": executor}
    done = _rota(env, "run", str(path), "--json")
    assert done.returncode == 1, done.stderr
    assert _last_json(done.stdout)["tasks"]["slow"]["state"] == "failed"
    assert fake.pods == {}
    (pod,) = fake.deleted
    assert pod.killed
