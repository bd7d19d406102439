"""The pod a Kubernetes task creates: pure values, and the manifest built from them.

Everything here is validated when the flow is defined (a bad option is a ``DefinitionError``),
and :func:`pod_manifest` builds the pod as the official client's own models (``V1Pod``), so the
client serializes exactly what the API server receives. Importing this module does not import
the ``kubernetes`` package; building a manifest does (``pip install 'rota[k8s]'``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from rota.errors import DefinitionError
from rota.operators.base import digest

MANAGED_BY: Final = "app.kubernetes.io/managed-by"
RUN_LABEL: Final = "rota.io/run"
FLOW_LABEL: Final = "rota.io/flow"
TASK_LABEL: Final = "rota.io/task"
TRY_LABEL: Final = "rota.io/try"
CONTAINER: Final = "task"
"""The name of the pod's one container (the one whose log and exit code are the task's)."""

_LABEL_VALUE: Final = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_DNS_LABEL: Final = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_EFFECTS: Final = frozenset({"NoSchedule", "PreferNoSchedule", "NoExecute"})
_RESOURCE_KEYS: Final = frozenset({"requests", "limits"})


def label_value(text: str) -> str:
    """*text* as a valid label value: itself when it is one, else a readable stem plus a digest.

    Two different texts never share a label value unless their digests collide.
    """
    if _LABEL_VALUE.match(text):
        return text
    stem = re.sub(r"[^-A-Za-z0-9_.]", "-", text)[:50].strip("-_.")
    return f"{stem}-{digest(text)[:10]}" if stem else digest(text)[:20]


def check_dns_label(what: str, name: str) -> None:
    """Refuse *name* unless it is an RFC 1123 label (a namespace, a volume's name).

    Raises:
        DefinitionError: naming *what* and the rule.
    """
    if not isinstance(name, str) or not _DNS_LABEL.match(name):
        raise DefinitionError(
            f"{what} {name!r} must be lower-case letters, digits and '-', at most 63 characters"
        )


@dataclass(frozen=True, slots=True)
class Toleration:
    """A pod toleration (``kubectl explain pod.spec.tolerations``).

    Attributes:
        key: the taint key; empty with ``operator="Exists"`` tolerates every taint.
        operator: ``Equal`` (the default) or ``Exists``.
        value: the taint value ``Equal`` matches; none with ``Exists``.
        effect: ``NoSchedule``, ``PreferNoSchedule``, ``NoExecute``, or None for all.
        seconds: how long a ``NoExecute`` taint is tolerated before eviction.
    """

    key: str = ""
    operator: str = "Equal"
    value: str | None = None
    effect: str | None = None
    seconds: int | None = None

    def __post_init__(self) -> None:
        if self.operator not in {"Equal", "Exists"}:
            raise DefinitionError(f"toleration operator must be Equal or Exists: {self.operator!r}")
        if self.operator == "Exists" and self.value is not None:
            raise DefinitionError(f"toleration {self.key!r}: operator Exists takes no value")
        if self.operator == "Equal" and not self.key:
            raise DefinitionError("toleration: operator Equal needs a key")
        if self.effect is not None and self.effect not in _EFFECTS:
            raise DefinitionError(f"toleration {self.key!r}: unknown effect {self.effect!r}")
        if self.seconds is not None and self.effect != "NoExecute":
            raise DefinitionError(f"toleration {self.key!r}: seconds need effect NoExecute")

    def model(self) -> Any:
        """This toleration as the client's ``V1Toleration``."""
        from kubernetes.client import V1Toleration

        return V1Toleration(
            key=self.key or None,
            operator=self.operator,
            value=self.value,
            effect=self.effect,
            toleration_seconds=self.seconds,
        )


@dataclass(frozen=True, slots=True)
class PodVolume:
    """A volume mounted into the task's container; exactly one source is given.

    Attributes:
        name: the volume's name in the pod (an RFC 1123 label).
        mount_path: where the container sees it (absolute).
        claim: a PersistentVolumeClaim's name.
        config_map: a ConfigMap's name.
        secret: a Secret's name.
        host_path: a folder on the node.
        empty_dir: a scratch folder that lives as long as the pod.
        read_only: mount it read-only.
        sub_path: mount only this path inside the volume.
    """

    name: str
    mount_path: str
    claim: str | None = None
    config_map: str | None = None
    secret: str | None = None
    host_path: str | None = None
    empty_dir: bool = False
    read_only: bool = False
    sub_path: str | None = None

    def __post_init__(self) -> None:
        check_dns_label("volume name", self.name)
        if not self.mount_path.startswith("/"):
            raise DefinitionError(f"volume {self.name!r}: mount_path must be absolute")
        sources = [self.claim, self.config_map, self.secret, self.host_path]
        given = sum(s is not None for s in sources) + int(self.empty_dir)
        if given != 1:
            raise DefinitionError(
                f"volume {self.name!r}: give exactly one of claim, config_map, secret, "
                f"host_path, empty_dir (got {given})"
            )

    def volume(self) -> Any:
        """The pod-level ``V1Volume``."""
        from kubernetes import client as k

        if self.claim is not None:
            return k.V1Volume(
                name=self.name,
                persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(
                    claim_name=self.claim, read_only=self.read_only or None
                ),
            )
        if self.config_map is not None:
            return k.V1Volume(
                name=self.name, config_map=k.V1ConfigMapVolumeSource(name=self.config_map)
            )
        if self.secret is not None:
            return k.V1Volume(
                name=self.name, secret=k.V1SecretVolumeSource(secret_name=self.secret)
            )
        if self.host_path is not None:
            return k.V1Volume(
                name=self.name, host_path=k.V1HostPathVolumeSource(path=self.host_path)
            )
        return k.V1Volume(name=self.name, empty_dir=k.V1EmptyDirVolumeSource())

    def mount(self) -> Any:
        """The container-level ``V1VolumeMount``."""
        from kubernetes.client import V1VolumeMount

        return V1VolumeMount(
            name=self.name,
            mount_path=self.mount_path,
            read_only=self.read_only or None,
            sub_path=self.sub_path,
        )


def check_resources(resources: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """``{"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}}`` checked and copied.

    Raises:
        DefinitionError: a key other than requests/limits, or an amount that is not text.
    """
    out: dict[str, dict[str, str]] = {}
    for key, amounts in resources.items():
        if key not in _RESOURCE_KEYS:
            raise DefinitionError(f"resources: {key!r} is not 'requests' or 'limits'")
        if not isinstance(amounts, Mapping):
            raise DefinitionError(f"resources[{key!r}] must map names to amounts")
        out[key] = {}
        for name, amount in amounts.items():
            if not isinstance(amount, str | int) or isinstance(amount, bool):
                raise DefinitionError(f"resources[{key!r}][{name!r}]: amount must be like '500m'")
            out[key][str(name)] = str(amount)
    return out


@dataclass(frozen=True, slots=True)
class PodShape:
    """What a Kubernetes task's pod looks like, apart from the attempt it runs."""

    image: str
    namespace: str = "default"
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    service_account: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    volumes: tuple[PodVolume, ...] = ()
    image_pull_policy: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.image, str) or not self.image.strip():
            raise DefinitionError("image must be a non-empty string")
        check_dns_label("namespace", self.namespace)
        names = [v.name for v in self.volumes]
        if len(set(names)) != len(names):
            raise DefinitionError(f"volume names repeat: {names}")
        if self.image_pull_policy not in {None, "Always", "IfNotPresent", "Never"}:
            raise DefinitionError(f"unknown image_pull_policy {self.image_pull_policy!r}")
        for key, value in self.labels.items():
            if not _LABEL_VALUE.match(value) or key.startswith("rota.io/"):
                raise DefinitionError(f"label {key!r}: {value!r} is not a label value of its own")


@dataclass(frozen=True, slots=True)
class PodIdentity:
    """The attempt a pod runs, which names and labels it."""

    run_id: str
    flow: str
    task_id: str
    try_number: int

    def name(self) -> str:
        """The pod's name: readable, an RFC 1123 label, one per attempt."""
        stem = re.sub(r"[^a-z0-9-]", "-", self.task_id.lower())[:40].strip("-")
        tail = digest(self.run_id, self.task_id, str(self.try_number))[:12]
        return f"rota-{stem}-{tail}" if stem else f"rota-{tail}"

    def labels(self) -> dict[str, str]:
        """The labels resume finds a run's leftover pods by."""
        return {
            MANAGED_BY: "rota",
            RUN_LABEL: label_value(self.run_id),
            FLOW_LABEL: label_value(self.flow),
            TASK_LABEL: label_value(self.task_id),
            TRY_LABEL: str(self.try_number),
        }

    def annotations(self) -> dict[str, str]:
        """The ids in full (label values are cut and digested when they are not valid)."""
        return {
            "rota.io/run-id": self.run_id,
            "rota.io/flow": self.flow,
            "rota.io/task-id": self.task_id,
            "rota.io/try-number": str(self.try_number),
        }


def run_selector(run_id: str) -> str:
    """The label selector of every pod Rota made for run *run_id*."""
    return f"{MANAGED_BY}=rota,{RUN_LABEL}={label_value(run_id)}"


def pod_manifest(
    shape: PodShape,
    who: PodIdentity,
    argv: Sequence[str],
    env: Mapping[str, str],
    active_deadline: int | None = None,
) -> Any:
    """The ``V1Pod`` that runs *argv* (the container's command, exactly) with *env*.

    The pod never restarts (its phase ends Succeeded or Failed, as a task attempt does). With
    *active_deadline* (seconds), the cluster itself ends the pod that long after it started, even
    when no runner is left to delete it.
    """
    from kubernetes import client as k

    resources = None
    if shape.resources:
        resources = k.V1ResourceRequirements(
            requests=dict(shape.resources.get("requests", {})) or None,
            limits=dict(shape.resources.get("limits", {})) or None,
        )
    container = k.V1Container(
        name=CONTAINER,
        image=shape.image,
        command=list(argv),
        env=[k.V1EnvVar(name=n, value=v) for n, v in sorted(env.items())] or None,
        resources=resources,
        volume_mounts=[v.mount() for v in shape.volumes] or None,
        image_pull_policy=shape.image_pull_policy,
    )
    spec = k.V1PodSpec(
        containers=[container],
        restart_policy="Never",
        active_deadline_seconds=active_deadline,
        service_account_name=shape.service_account,
        node_selector=dict(shape.node_selector) or None,
        tolerations=[t.model() for t in shape.tolerations] or None,
        volumes=[v.volume() for v in shape.volumes] or None,
    )
    meta = k.V1ObjectMeta(
        name=who.name(),
        namespace=shape.namespace,
        labels={**shape.labels, **who.labels()},
        annotations=who.annotations(),
    )
    return k.V1Pod(api_version="v1", kind="Pod", metadata=meta, spec=spec)
