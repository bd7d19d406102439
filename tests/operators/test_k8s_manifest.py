"""The pod manifest of a Kubernetes task, checked as the official client serializes it."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("kubernetes")

from kubernetes.client import ApiClient, V1Pod

from rota import Flow
from rota.errors import DefinitionError
from rota.operators.base import ExecContext
from rota.operators.k8smanifest import (
    PodIdentity,
    PodShape,
    PodVolume,
    Toleration,
    label_value,
    pod_manifest,
    run_selector,
)
from rota.operators.kubernetes import KubernetesPodOp, KubernetesPodTask

WHO = PodIdentity("run-1", "nightly", "train", 2)


def wire(pod: Any) -> dict[str, Any]:
    """What the client sends the API server for *pod*."""
    assert isinstance(pod, V1Pod)
    out: dict[str, Any] = ApiClient().sanitize_for_serialization(pod)
    return out


def every_option() -> PodShape:
    return PodShape(
        image="localhost/ml-env:1",
        namespace="ml",
        resources={"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"nvidia.com/gpu": "1"}},
        service_account="trainer",
        node_selector={"pool": "gpu"},
        tolerations=(
            Toleration("gpu", value="yes", effect="NoSchedule"),
            Toleration("spot", operator="Exists", effect="NoExecute", seconds=60),
        ),
        volumes=(
            PodVolume("data", "/data", claim="datasets", read_only=True),
            PodVolume("conf", "/etc/app", config_map="app-conf", sub_path="app.toml"),
            PodVolume("creds", "/var/creds", secret="s3-creds"),
            PodVolume("host", "/host", host_path="/srv/cache"),
            PodVolume("scratch", "/scratch", empty_dir=True),
        ),
        image_pull_policy="IfNotPresent",
        labels={"team": "ml"},
    )


def test_every_option_reaches_the_wire_exactly() -> None:
    argv = ["python", "-m", "train", "--date", "2026-12-01", "a b", "$(touch pwned)"]
    pod = pod_manifest(every_option(), WHO, argv, {"B": "2", "A": "1"}, active_deadline=90)
    assert wire(pod) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": WHO.name(),
            "namespace": "ml",
            "labels": {
                "team": "ml",
                "app.kubernetes.io/managed-by": "rota",
                "rota.io/run": "run-1",
                "rota.io/flow": "nightly",
                "rota.io/task": "train",
                "rota.io/try": "2",
            },
            "annotations": {
                "rota.io/run-id": "run-1",
                "rota.io/flow": "nightly",
                "rota.io/task-id": "train",
                "rota.io/try-number": "2",
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": 90,
            "serviceAccountName": "trainer",
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [
                {"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"},
                {
                    "key": "spot",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 60,
                },
            ],
            "containers": [
                {
                    "name": "task",
                    "image": "localhost/ml-env:1",
                    "imagePullPolicy": "IfNotPresent",
                    "command": argv,
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "resources": {
                        "requests": {"cpu": "500m", "memory": "1Gi"},
                        "limits": {"nvidia.com/gpu": "1"},
                    },
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data", "readOnly": True},
                        {"name": "conf", "mountPath": "/etc/app", "subPath": "app.toml"},
                        {"name": "creds", "mountPath": "/var/creds"},
                        {"name": "host", "mountPath": "/host"},
                        {"name": "scratch", "mountPath": "/scratch"},
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "data",
                    "persistentVolumeClaim": {"claimName": "datasets", "readOnly": True},
                },
                {"name": "conf", "configMap": {"name": "app-conf"}},
                {"name": "creds", "secret": {"secretName": "s3-creds"}},
                {"name": "host", "hostPath": {"path": "/srv/cache"}},
                {"name": "scratch", "emptyDir": {}},
            ],
        },
    }


def test_the_smallest_pod_has_no_empty_fields() -> None:
    pod = wire(pod_manifest(PodShape("busybox"), WHO, ["true"], {}))
    assert pod["metadata"]["namespace"] == "default"
    assert pod["spec"] == {
        "restartPolicy": "Never",
        "containers": [{"name": "task", "image": "busybox", "command": ["true"]}],
    }


def test_pod_names_are_dns_labels_and_one_per_attempt() -> None:
    names = {PodIdentity("r", "f", "Train_Model.v2", n).name() for n in range(1, 4)} | {
        PodIdentity("r2", "f", "Train_Model.v2", 1).name()
    }
    assert len(names) == 4
    for name in names:
        assert name.startswith("rota-train-model-v2-")
        assert len(name) <= 63 and name == name.lower()
    assert PodIdentity("r", "f", "x" * 200, 1).name().count("x") == 40
    assert PodIdentity("r", "f", "___", 1).name().startswith("rota-")


def test_label_values_are_valid_and_distinct() -> None:
    assert label_value("run-1") == "run-1"
    long_a, long_b = "a" * 70, "a" * 71
    assert label_value(long_a) != label_value(long_b)
    for text in (long_a, "manual__2026-12-01T03:00:00+00:00", "ü/ü", "-x-"):
        value = label_value(text)
        assert len(value) <= 63
        assert value[0].isalnum() and value[-1].isalnum()
    assert (
        run_selector("r 1") == f"app.kubernetes.io/managed-by=rota,rota.io/run={label_value('r 1')}"
    )
    who = PodIdentity("manual__2026-12-01T03:00:00+00:00", "f", "t", 1)
    assert who.annotations()["rota.io/run-id"] == "manual__2026-12-01T03:00:00+00:00"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Toleration("k", operator="Maybe"), "Equal or Exists"),
        (lambda: Toleration("k", operator="Exists", value="v"), "takes no value"),
        (Toleration, "needs a key"),
        (lambda: Toleration("k", effect="Sometimes"), "unknown effect"),
        (lambda: Toleration("k", seconds=5), "NoExecute"),
        (lambda: PodVolume("Data", "/d", empty_dir=True), "lower-case"),
        (lambda: PodVolume("d", "rel", empty_dir=True), "absolute"),
        (lambda: PodVolume("d", "/d"), "exactly one"),
        (lambda: PodVolume("d", "/d", claim="c", secret="s"), "exactly one"),
        (lambda: PodShape(""), "image"),
        (lambda: PodShape("i", namespace="My_NS"), "namespace"),
        (lambda: PodShape("i", image_pull_policy="Sometimes"), "image_pull_policy"),
        (lambda: PodShape("i", labels={"rota.io/run": "x"}), "label"),
        (lambda: PodShape("i", labels={"team": "not valid!"}), "label"),
        (
            lambda: PodShape("i", volumes=(PodVolume("d", "/a", empty_dir=True),) * 2),
            "repeat",
        ),
    ],
)
def test_bad_options_are_refused_at_definition(make: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        make()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"command": "echo hi"}, "list of arguments"),
        ({"command": []}, "list of arguments"),
        ({"command": ["echo", 3]}, "string"),
        ({"command": ["echo", "{{ oops"]}, "argument 1"),
        ({"command": ["true"], "env": {"X": 1}}, "env 'X'"),
        ({"command": ["true"], "resources": {"cpu": "1"}}, "requests"),
        ({"command": ["true"], "resources": {"limits": {"cpu": 1.5}}}, "amount"),
        ({"command": ["true"], "poll_interval": 0}, "poll_interval"),
    ],
)
def test_bad_task_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with Flow("f"), pytest.raises(DefinitionError, match=message):
        KubernetesPodTask("t", "busybox", **kwargs)


def test_templates_render_one_argument_each_and_values_stay_data() -> None:
    with Flow("f"):
        node = KubernetesPodTask(
            "t",
            "busybox",
            ["echo", "{{ params.x }}", "at {{ ds }}"],
            env={"WHO": "{{ params.x }}", "PLAIN": "plain"},
        )
    op = node.op
    assert isinstance(op, KubernetesPodOp)
    ctx = ExecContext("r", "f", "t", 1, params={"x": "$(touch pwned); `id`"})
    argv, env = op.rendered(ctx)
    assert argv[0] == "echo"
    assert argv[1] == "$(touch pwned); `id`"
    assert argv[2].startswith("at ")
    assert env == {"WHO": "$(touch pwned); `id`", "PLAIN": "plain"}
    reads = op.run_reads(ctx)
    assert reads.ambient
    assert reads.rendered["argument 1"] == "$(touch pwned); `id`"


def test_secret_named_env_is_masked_in_run_reads() -> None:
    with Flow("f"):
        node = KubernetesPodTask("t", "busybox", ["true"], env={"API_TOKEN": "{{ params.t }}"})
    assert isinstance(node.op, KubernetesPodOp)
    reads = node.op.run_reads(ExecContext("r", "f", "t", 1, params={"t": "s3cr3t"}))
    assert reads.rendered["env API_TOKEN"] == "***"
