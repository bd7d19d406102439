"""Kubernetes pod tasks: ``KubernetesPodTask(id, image, command, namespace=..., ...)``.

Each attempt is one pod (``rota.operators.k8smanifest``) run by the official ``kubernetes``
client (``pip install 'rota[k8s]'``; ``rota.operators.k8spod``): its log is streamed into the
attempt's log, its phase and exit code decide the attempt's state, the task's timeout deletes it,
and it is deleted when it ends in any case. The output is the log's last non-empty line, as a
shell task's is its stdout's.

*command* is an argv list given to the container as it is: each item is a template rendered on
its own into one argument (values are data: no shell reads them unless the command is a shell).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TextIO

from rota.errors import DefinitionError
from rota.model.builder import FlowBuilder, TaskNode
from rota.model.callbacks import CallbackArg
from rota.model.policies import RetryPolicy, TriggerRule
from rota.model.secrets import MASK, is_sensitive_name
from rota.model.templating import check_template, is_template, render
from rota.operators.base import ExecContext, RunReads, digest
from rota.operators.k8smanifest import (
    PodIdentity,
    PodShape,
    PodVolume,
    Toleration,
    check_resources,
    pod_manifest,
)
from rota.operators.k8spod import delete_leftovers, run_pod


class LastLine:
    """A log sink that writes to *stream* and keeps the last non-empty line it saw."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tail = ""
        self.last: str | None = None

    def __call__(self, chunk: bytes) -> None:
        text = chunk.decode(errors="replace")
        self._stream.write(text)
        self._stream.flush()
        lines = (self._tail + text).split("\n")
        self._tail = lines.pop()
        for line in lines:
            if line.strip():
                self.last = line

    def result(self) -> str | None:
        """The last non-empty line, the unfinished one included."""
        return self._tail if self._tail.strip() else self.last


def core_api(config_file: str | None, context: str | None) -> Any:
    """A ``CoreV1Api`` from *config_file* (else ``KUBECONFIG`` or ``~/.kube/config``), or from
    the pod's own service account when Rota runs inside the cluster and no file is named."""
    from kubernetes import client
    from kubernetes import config as kube_config

    config: Any = kube_config  # its loaders carry no type hints
    cfg = client.Configuration()
    if config_file is None and context is None:
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException:
            config.load_kube_config(client_configuration=cfg)
    else:
        config.load_kube_config(config_file=config_file, context=context, client_configuration=cfg)
    return client.CoreV1Api(client.ApiClient(cfg))


@dataclass(frozen=True, slots=True, eq=False)
class KubernetesPodOp:
    """Runs *argv* in a pod of *shape*; see the module docstring."""

    shape: PodShape
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    config_file: str | None = None
    context: str | None = None
    poll_interval: float = 2.0
    kind: str = "kubernetes"

    def describe(self) -> str:
        return f"{self.shape.image}: {' '.join(self.argv)}"

    def code_hash(self) -> str:
        return digest(repr(self.shape), repr(self.argv), repr(sorted(self.env.items())))

    def rendered(self, ctx: ExecContext) -> tuple[list[str], dict[str, str]]:
        """The argv and env as this attempt runs them, each item rendered on its own.

        Raises:
            TemplateRenderError: an argument or env value does not render.
        """
        variables = ctx.template_vars()
        where = f"task {ctx.task_id!r}"
        argv = [
            render(a, variables, where=f"{where} argument {i}") if is_template(a) else a
            for i, a in enumerate(self.argv)
        ]
        env = {
            n: render(v, variables, where=f"{where} env {n!r}") if is_template(v) else v
            for n, v in self.env.items()
        }
        return argv, env

    def run_reads(self, ctx: ExecContext) -> RunReads:
        """Every parameter and date (the pod's environment holds them), and the templates as
        rendered (``***`` under a secret's name).

        Raises:
            TemplateRenderError: an argument or env value does not render.
        """
        argv, env = self.rendered(ctx)
        parts = {f"argument {i}": a for i, a in enumerate(argv)}
        parts.update({f"env {n}": MASK if is_sensitive_name(n) else v for n, v in env.items()})
        return RunReads(True, parts)

    def leftovers_scope(self) -> str:
        return f"kubernetes:{self.config_file or ''}:{self.context or ''}:{self.shape.namespace}"

    def remove_leftovers(self, run_id: str) -> list[str]:
        """Delete the pods of run *run_id* in this task's namespace (found by their labels).

        Raises:
            ApiException: the cluster refused to list or delete them.
            urllib3.exceptions.HTTPError: the cluster cannot be reached.
        """
        api = core_api(self.config_file, self.context)
        try:
            return delete_leftovers(api, self.shape.namespace, run_id)
        finally:
            api.api_client.close()

    def execute(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Run the attempt's pod to its end; its log's last non-empty line is the output.

        Raises:
            TemplateRenderError: an argument or env value does not render.
            PodFailed: the pod ended Failed, or its container cannot start.
            TaskTimeout: the attempt's deadline passed (the pod is deleted).
        """
        del args, kwargs
        argv, env = self.rendered(ctx)
        who = PodIdentity(ctx.run_id, ctx.flow, ctx.task_id, ctx.try_number)
        # a pod's spec is readable by whoever may read pods: no secret goes there unasked
        ambient = {k: v for k, v in ctx.environ().items() if ctx.masker.redact(v) == v}
        manifest = pod_manifest(
            self.shape, who, argv, {**ambient, **env}, _active_deadline(ctx.deadline)
        )
        shown = ctx.masker.redact(" ".join(argv))
        print(f"[rota] pod {self.shape.namespace}/{who.name()}: {shown}", file=sys.stderr)
        sink = LastLine(sys.stdout)
        api = core_api(self.config_file, self.context)
        try:
            run_pod(api, manifest, deadline=ctx.deadline, poll=self.poll_interval, sink=sink)
        finally:
            api.api_client.close()
        return sink.result()


DEADLINE_SLACK_S = 30
"""Seconds the cluster's own deadline for a pod lies past the attempt's: Rota deletes the pod at
the attempt's deadline; the cluster ends it a little later if no runner is left to."""


def _active_deadline(deadline: float | None) -> int | None:
    if deadline is None:
        return None
    return max(1, math.ceil(deadline - time.monotonic())) + DEADLINE_SLACK_S


def _check_argv(task_id: str, command: object) -> tuple[str, ...]:
    """The command as a tuple of text arguments, its templates checked.

    Raises:
        DefinitionError: it is not a non-empty list of strings, or a template does not parse.
    """
    where = f"task {task_id!r}"
    if isinstance(command, str) or not isinstance(command, Sequence) or not command:
        raise DefinitionError(
            f"{where}: command must be a non-empty list of arguments "
            '(for a shell, say so: ["sh", "-c", "..."])'
        )
    if not all(isinstance(a, str) for a in command):
        raise DefinitionError(f"{where}: every argument of the command must be a string")
    builder = FlowBuilder.current()
    for i, arg in enumerate(command):
        if is_template(arg):
            check_template(arg, where=f"{where} argument {i}")
            if builder is not None:
                builder.note_template(f"{where} argument {i}", arg)
    return tuple(command)


def _check_env(task_id: str, env: Mapping[str, str]) -> dict[str, str]:
    where = f"task {task_id!r}"
    out = {}
    for name, value in env.items():
        if not isinstance(value, str):
            raise DefinitionError(
                f"{where}: env {name!r} must be a string (for a secret, mount a Kubernetes Secret)"
            )
        if is_template(value):
            check_template(value, where=f"{where} env {name!r}")
        out[str(name)] = value
    return out


POD_OPTIONS = frozenset(
    {
        "namespace", "env", "resources", "service_account", "node_selector", "tolerations",
        "volumes", "labels", "image_pull_policy", "config_file", "context", "poll_interval",
    }
)  # fmt: skip
"""The options of a pod (:func:`pod_op`), beside its image and command."""


def pod_op(
    task_id: str,
    image: str,
    command: Sequence[str],
    *,
    namespace: str = "default",
    env: Mapping[str, str] | None = None,
    resources: Mapping[str, Mapping[str, str]] | None = None,
    service_account: str | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Iterable[Toleration] = (),
    volumes: Iterable[PodVolume] = (),
    labels: Mapping[str, str] | None = None,
    image_pull_policy: str | None = None,
    config_file: str | None = None,
    context: str | None = None,
    poll_interval: float = 2.0,
) -> KubernetesPodOp:
    """The operator of a pod task with these options (see :class:`KubernetesPodTask`).

    Raises:
        DefinitionError: an option is not valid.
    """
    shape = PodShape(
        image=image,
        namespace=namespace,
        resources=check_resources(resources or {}),
        service_account=service_account,
        node_selector=dict(node_selector or {}),
        tolerations=tuple(tolerations),
        volumes=tuple(volumes),
        image_pull_policy=image_pull_policy,
        labels=dict(labels or {}),
    )
    if poll_interval <= 0:
        raise DefinitionError(f"task {task_id!r}: poll_interval must be positive")
    return KubernetesPodOp(
        shape,
        _check_argv(task_id, command),
        _check_env(task_id, env or {}),
        config_file,
        context,
        poll_interval,
    )


class KubernetesPodTask(TaskNode):
    """An operator-style task run as a Kubernetes pod, as Airflow's KubernetesPodOperator.

    ``KubernetesPodTask("train", "localhost/ml:1", ["python", "-m", "train", "{{ ds }}"],
    namespace="ml", resources={"limits": {"nvidia.com/gpu": "1"}})``. Needs
    ``pip install 'rota[k8s]'`` (the official ``kubernetes`` client).

    Args:
        task_id: The task's id.
        image: The pod's image.
        command: The container's argv, a list of templates each rendered into one argument
            (values are data: no shell reads them unless the command is a shell).
        namespace: The pod's namespace.
        env: Variables for the container (templates), besides the attempt's own
            (``ROTA_RUN_ID``, ``ROTA_PARAM_*``...; a secret parameter's value is left out).
        resources: ``{"requests": {...}, "limits": {...}}`` of the pod (not a Rota pool's).
        service_account: The pod's service account.
        node_selector: The pod's node selector.
        tolerations: ``rota.Toleration`` values.
        volumes: ``rota.PodVolume`` values (a claim, a config map, a secret, a host path...).
        labels: More labels for the pod (``rota.io/*`` are Rota's own).
        image_pull_policy: ``Always``, ``IfNotPresent`` or ``Never``.
        config_file: A kubeconfig file; default ``KUBECONFIG``, ``~/.kube/config``, or the
            service account of a pod Rota itself runs in.
        context: The kubeconfig context.
        poll_interval: Seconds between reads of the pod's status.
        retries: As every task's.
        retry_delay: As every task's.
        timeout: At the timeout the pod is deleted and the attempt fails.
        tags: As every task's.
        trigger_rule: As every task's.
        on_success: As every task's.
        on_failure: As every task's.
        on_retry: As every task's.

    Raises:
        DefinitionError: an option is not valid (one line naming the task).
    """

    def __init__(
        self,
        task_id: str,
        image: str,
        command: Sequence[str],
        *,
        namespace: str = "default",
        env: Mapping[str, str] | None = None,
        resources: Mapping[str, Mapping[str, str]] | None = None,
        service_account: str | None = None,
        node_selector: Mapping[str, str] | None = None,
        tolerations: Iterable[Toleration] = (),
        volumes: Iterable[PodVolume] = (),
        labels: Mapping[str, str] | None = None,
        image_pull_policy: str | None = None,
        config_file: str | None = None,
        context: str | None = None,
        poll_interval: float = 2.0,
        retries: RetryPolicy | int | None = None,
        retry_delay: timedelta | None = None,
        timeout: timedelta | float | None = None,
        tags: Iterable[str] = (),
        trigger_rule: TriggerRule | str = TriggerRule.ALL_SUCCESS,
        on_success: CallbackArg = None,
        on_failure: CallbackArg = None,
        on_retry: CallbackArg = None,
    ) -> None:
        op = pod_op(
            task_id, image, command, namespace=namespace, env=env, resources=resources,
            service_account=service_account, node_selector=node_selector,
            tolerations=tolerations, volumes=volumes, labels=labels,
            image_pull_policy=image_pull_policy, config_file=config_file, context=context,
            poll_interval=poll_interval,
        )  # fmt: skip
        super().__init__(
            task_id,
            op,
            retries=retries,
            retry_delay=retry_delay,
            timeout=timeout,
            tags=tags,
            trigger_rule=trigger_rule,
            on_success=on_success,
            on_failure=on_failure,
            on_retry=on_retry,
        )
