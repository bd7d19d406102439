"""A Kubernetes task's pod life against a fake API server on 127.0.0.1 (``k8sfake``).

The official client talks real HTTP to it, loaded from a real kubeconfig file; the fake's kubelet
runs each container's argv as a real process, so logs and exit codes are real.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kubernetes")

from k8sfake import MISSING_IMAGE, FakeKubernetes, serve
from kubernetes.client.exceptions import ApiException

from rota import Flow
from rota.errors import TaskTimeout
from rota.executors.base import AttemptSpec
from rota.executors.pool import LocalPoolExecutor
from rota.executors.threads import ThreadExecutor
from rota.model.secrets import Masker
from rota.operators.base import ExecContext
from rota.operators.k8smanifest import PodIdentity, PodShape, pod_manifest
from rota.operators.k8spod import PodFailed, create_pod, delete_leftovers, delete_pod, run_pod
from rota.operators.kubernetes import (
    DEADLINE_SLACK_S,
    KubernetesPodOp,
    KubernetesPodTask,
    core_api,
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeKubernetes, Path]]:
    work = tmp_path / "kubelet"
    work.mkdir()
    with serve(work, pending_reads=2) as pair:
        yield pair


def pod_op(kubeconfig: Path, command: list[str], **options: Any) -> KubernetesPodOp:
    with Flow("f"):
        node = KubernetesPodTask(
            "t",
            options.pop("image", "busybox"),
            command,
            config_file=str(kubeconfig),
            poll_interval=0.02,
            **options,
        )
    assert isinstance(node.op, KubernetesPodOp)
    return node.op


def ctx(**kwargs: Any) -> ExecContext:
    return ExecContext("run-1", "f", "t", 1, **kwargs)


def verbs(fake: FakeKubernetes) -> list[str]:
    """The kinds of request the fake received, consecutive repeats folded."""
    out: list[str] = []
    for method, path in fake.requests:
        verb = {"POST": "create", "DELETE": "delete"}.get(method, "")
        verb = verb or ("log" if path.endswith("/log") else "read")
        if not out or out[-1] != verb:
            out.append(verb)
    return out


def test_a_pod_that_succeeds_streams_its_log_and_is_deleted(
    cluster: tuple[FakeKubernetes, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    fake, kubeconfig = cluster
    op = pod_op(kubeconfig, ["sh", "-c", 'echo "one $ROTA_TASK_ID"; echo "{{ params.x }}"'])
    out = op.execute(ctx(params={"x": "last"}), (), {})
    assert out == "last"
    assert "one t\nlast\n" in capfd.readouterr().out
    assert verbs(fake)[0] == "create" and verbs(fake)[-1] == "delete"
    assert "log" in verbs(fake)
    assert fake.pods == {}
    (pod,) = fake.deleted
    assert pod.body["metadata"]["labels"]["rota.io/run"] == "run-1"
    assert pod.body["spec"]["restartPolicy"] == "Never"
    assert not pod.killed


def test_a_log_follow_refused_with_410_or_cut_short_is_read_again_without_repeats(
    cluster: tuple[FakeKubernetes, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    """As a client of the real API must: a 410 Gone, then a stream cut after its first line
    while the pod still runs; the log reaches the attempt's log once, whole."""
    fake, kubeconfig = cluster
    fake.gone_logs = 1
    fake.cut_log_after = len("one\n")
    script = "echo one; sleep 1; echo two; sleep 1; echo three"
    op = pod_op(kubeconfig, ["sh", "-c", script])
    assert op.execute(ctx(), (), {}) == "three"
    out = capfd.readouterr().out
    assert "one\ntwo\nthree\n" in out and out.count("one") == 1
    follows = [p for m, p in fake.requests if m == "GET" and p.endswith("/log")]
    assert len(follows) >= 3  # refused, cut, then read again to its end
    assert fake.gone_logs == 0 and fake.cut_log_after is None


def test_a_failed_pod_fails_the_attempt_with_its_exit_code(
    cluster: tuple[FakeKubernetes, Path],
) -> None:
    fake, kubeconfig = cluster
    op = pod_op(kubeconfig, ["sh", "-c", "echo oops; exit 3"])
    with pytest.raises(PodFailed) as info:
        op.execute(ctx(), (), {})
    assert info.value.code == 3
    assert "code 3" in str(info.value)
    assert fake.pods == {} and len(fake.deleted) == 1


def test_a_pod_past_the_deadline_is_deleted_and_the_attempt_times_out(
    cluster: tuple[FakeKubernetes, Path],
) -> None:
    fake, kubeconfig = cluster
    op = pod_op(kubeconfig, ["sleep", "60"])
    with pytest.raises(TaskTimeout):
        op.execute(ctx(deadline=time.monotonic() + 0.5), (), {})
    assert fake.pods == {}
    (pod,) = fake.deleted
    assert pod.killed  # the container was running when its pod was deleted
    # and the cluster would have ended it by itself a little later
    assert pod.body["spec"]["activeDeadlineSeconds"] == 1 + DEADLINE_SLACK_S


def test_a_pod_the_cluster_ends_at_its_active_deadline_times_the_attempt_out(
    cluster: tuple[FakeKubernetes, Path],
) -> None:
    """What happens when no runner deleted it first: the kubelet's own deadline."""
    fake, kubeconfig = cluster
    api = core_api(str(kubeconfig), None)
    who = PodIdentity("run-1", "f", "t", 1)
    manifest = pod_manifest(PodShape("busybox"), who, ["sleep", "60"], {}, active_deadline=1)
    with pytest.raises(TaskTimeout, match="active deadline"):
        run_pod(api, manifest, deadline=None, poll=0.05, sink=lambda chunk: None)
    (pod,) = fake.deleted
    assert pod.deadline_exceeded
    assert fake.pods == {}
    api.api_client.close()
    assert pod.proc is not None and pod.proc.wait(timeout=10) != 0


def test_a_pod_whose_image_cannot_be_pulled_fails_and_is_deleted(
    cluster: tuple[FakeKubernetes, Path],
) -> None:
    fake, kubeconfig = cluster
    op = pod_op(kubeconfig, ["true"], image=MISSING_IMAGE)
    with pytest.raises(PodFailed, match="ErrImagePull"):
        op.execute(ctx(), (), {})
    assert fake.pods == {} and len(fake.deleted) == 1


def test_a_pod_deleted_by_someone_else_fails_the_attempt(
    cluster: tuple[FakeKubernetes, Path],
) -> None:
    fake, kubeconfig = cluster
    op = pod_op(kubeconfig, ["sleep", "60"])

    def delete_when_running() -> None:
        limit = time.monotonic() + 60
        while time.monotonic() < limit:
            running = [k for k, p in list(fake.pods.items()) if p.proc is not None]
            if running:
                fake.delete(running[0])  # as `kubectl delete pod` would
                return
            time.sleep(0.02)

    deleter = threading.Thread(target=delete_when_running)
    deleter.start()
    try:
        with pytest.raises(PodFailed, match="the pod is gone"):
            op.execute(ctx(), (), {})
    finally:
        deleter.join()
    (pod,) = fake.deleted
    assert pod.killed


def test_a_command_substitution_in_a_value_does_not_execute(
    cluster: tuple[FakeKubernetes, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    fake, kubeconfig = cluster
    op = pod_op(kubeconfig, ["echo", "{{ params.x }}"], env={"Y": "{{ params.x }}"})
    out = op.execute(ctx(params={"x": "$(touch pwned)"}), (), {})
    assert out == "$(touch pwned)"
    assert not (fake.workdir / "pwned").exists()
    (pod,) = fake.deleted
    env = {e["name"]: e["value"] for e in pod.body["spec"]["containers"][0]["env"]}
    assert env["Y"] == "$(touch pwned)"
    assert pod.body["spec"]["containers"][0]["command"] == ["echo", "$(touch pwned)"]


def test_secret_parameters_stay_out_of_the_pod_spec(
    cluster: tuple[FakeKubernetes, Path],
) -> None:
    fake, kubeconfig = cluster
    op = pod_op(kubeconfig, ["true"])
    params = {"token": "s3cr3t-value", "day": "monday"}
    op.execute(ctx(params=params, masker=Masker(["s3cr3t-value"])), (), {})
    (pod,) = fake.deleted
    env = {e["name"]: e["value"] for e in pod.body["spec"]["containers"][0]["env"]}
    assert env["ROTA_PARAM_DAY"] == "monday"
    assert "ROTA_PARAM_TOKEN" not in env
    assert "s3cr3t-value" not in json.dumps(pod.body)


def test_a_pod_of_the_same_attempt_left_behind_is_replaced(
    cluster: tuple[FakeKubernetes, Path],
) -> None:
    """409: the pod of this very attempt exists (a killed runner's); it is deleted, then made."""
    fake, kubeconfig = cluster
    api = core_api(str(kubeconfig), None)
    who = PodIdentity("run-1", "f", "t", 1)
    create_pod(api, pod_manifest(PodShape("busybox"), who, ["sleep", "60"], {}))
    op = pod_op(kubeconfig, ["echo", "fresh"])
    assert op.execute(ctx(), (), {}) == "fresh"
    assert [m for m, _ in fake.requests[:3]] == ["POST", "POST", "DELETE"]
    assert fake.pods == {} and len(fake.deleted) == 2
    api.api_client.close()


def test_deleting_a_pod_that_is_gone_is_not_an_error(
    cluster: tuple[FakeKubernetes, Path],
) -> None:
    _, kubeconfig = cluster
    api = core_api(str(kubeconfig), None)
    assert delete_pod(api, "rota-nothing-here", "default") is False
    with pytest.raises(ApiException) as info:
        api.read_namespaced_pod_status("rota-nothing-here", "default")
    assert info.value.status == 404
    api.api_client.close()


def test_leftovers_of_a_run_are_deleted_and_no_other_run_s(
    cluster: tuple[FakeKubernetes, Path],
) -> None:
    fake, kubeconfig = cluster
    api = core_api(str(kubeconfig), None)
    shape = PodShape("busybox", namespace="ml")
    mine = [PodIdentity("run-1", "f", t, 1) for t in ("a", "b")]
    other = PodIdentity("run-2", "f", "a", 1)
    for who in [*mine, other]:
        create_pod(api, pod_manifest(shape, who, ["sleep", "60"], {}))
    deleted = delete_leftovers(api, "ml", "run-1")
    assert sorted(deleted) == sorted(w.name() for w in mine)
    assert list(fake.pods) == [("ml", other.name())]
    assert delete_leftovers(api, "ml", "run-1") == []
    api.api_client.close()


def _pool_spec(tmp_path: Path, op: KubernetesPodOp) -> AttemptSpec:
    return AttemptSpec(
        attempt_id=1, run_id="run-1", flow="f", task_id="t", map_index=-1, try_number=1,
        op=op, args=(), kwargs={}, inputs=(), artifacts=str(tmp_path / "artifacts"),
        log_path=str(tmp_path / "logs" / "t.log"),
    )  # fmt: skip


def test_a_cancel_ends_the_pool_worker_and_its_running_pod_is_deleted(
    cluster: tuple[FakeKubernetes, Path], tmp_path: Path
) -> None:
    """A cancel closes the pool with ``cancel=True``: the busy worker gets SIGTERM, deletes the
    attempt's pod, then dies (SIGKILL after the grace if it did not)."""
    fake, kubeconfig = cluster
    pool = LocalPoolExecutor(1, str(tmp_path / "logs"), kill_grace=10.0)
    try:
        pool.submit(_pool_spec(tmp_path, pod_op(kubeconfig, ["sleep", "60"])))
        limit = time.monotonic() + 60
        while not any(p.proc is not None for p in list(fake.pods.values())):
            assert time.monotonic() < limit, "the pod never started"
            pool.poll(0.05)
        (worker,) = pool._workers
    finally:
        pool.close(cancel=True)
    assert worker.proc.exitcode == -signal.SIGTERM  # not 70 (its lifeline's end), not -9
    assert fake.pods == {}
    (pod,) = fake.deleted
    assert pod.killed


@pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="no KUBECONFIG: no live cluster")
def test_live_cluster_runs_a_pod_and_deletes_it() -> None:
    """Against a real cluster when ``KUBECONFIG`` names one (busybox pulled from its registry)."""
    with Flow("live"):
        node = KubernetesPodTask(
            "live",
            os.environ.get("ROTA_K8S_TEST_IMAGE", "busybox:1.36"),
            ["sh", "-c", "echo hello from $ROTA_TASK_ID"],
            namespace=os.environ.get("ROTA_K8S_TEST_NAMESPACE", "default"),
            poll_interval=1.0,
        )
    assert isinstance(node.op, KubernetesPodOp)
    assert node.op.execute(ExecContext("live-run", "live", "live", 1), (), {}) == (
        "hello from live"
    )
    api = core_api(None, None)
    assert delete_leftovers(api, node.op.shape.namespace, "live-run") == []
    api.api_client.close()


def test_a_cancel_of_the_thread_executor_deletes_the_running_pod(
    cluster: tuple[FakeKubernetes, Path], tmp_path: Path
) -> None:
    """A thread cannot be ended; the pod its attempt started is deleted at once all the same."""
    fake, kubeconfig = cluster
    pool = ThreadExecutor(1)
    pool.submit(_pool_spec(tmp_path, pod_op(kubeconfig, ["sleep", "60"])))
    limit = time.monotonic() + 60
    while not any(p.proc is not None for p in list(fake.pods.values())):
        assert time.monotonic() < limit, "the pod never started"
        pool.poll(0.05)
    pool.close(cancel=True)
    assert fake.pods == {}
    (pod,) = fake.deleted
    assert pod.killed
    # the attempt's thread then sees its pod gone and ends
    for thread in pool._threads:
        thread.join(timeout=60)
