"""``ContainerTask``: the definition side of a container task (its options, checked when the flow
is defined); :mod:`rota.operators.container` runs it."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, cast

from rota.errors import DefinitionError
from rota.model.builder import FlowBuilder, TaskNode
from rota.model.callbacks import CallbackArg
from rota.model.policies import RetryPolicy, TriggerRule
from rota.model.secrets import Secret
from rota.model.templating import check_template, is_template
from rota.operators.container import (
    ENV_NAME,
    NETWORK_NAME,
    RESOURCE_FLAGS,
    TEMPLATE_TAG,
    ContainerOp,
    Mount,
)


def split_command(command: str) -> tuple[str, ...]:
    """Split *command* into words as a shell would, keeping each ``{{ }}``/``{% %}`` tag whole
    (so a template's value is never split into words, nor joined with its neighbours' text
    wrongly).

    Raises:
        DefinitionError: the command's quotes do not close.
    """
    tags: list[str] = []

    def hold(match: re.Match[str]) -> str:
        tags.append(match.group(0))
        return f"\x00{len(tags) - 1}\x00"

    try:
        words = shlex.split(TEMPLATE_TAG.sub(hold, command))
    except ValueError as err:
        raise DefinitionError(f"command {command!r}: {err}") from None
    return tuple(re.sub(r"\x00([0-9]+)\x00", lambda m: tags[int(m.group(1))], w) for w in words)


def _command(task_id: str, command: str | Sequence[str], shell: bool) -> tuple[str, ...]:
    where = f"task {task_id!r}"
    if shell:
        if not isinstance(command, str) or not command.strip():
            raise DefinitionError(f"{where}: with shell=True the command is one non-empty string")
        return (command,)
    argv = split_command(command) if isinstance(command, str) else tuple(command)
    if not all(isinstance(a, str) for a in argv):
        raise DefinitionError(f"{where}: every argument of the command must be a string")
    return argv


def _check_templates(task_id: str, op: ContainerOp) -> None:
    """Fail the definition on a template syntax error in the command or an env value.

    Raises:
        DefinitionError: one line naming the task, the problem and the template line.
    """
    where = f"task {task_id!r}"
    builder = FlowBuilder.current()
    texts = [(where, a, op.shell) for a in op.command if is_template(a)]
    texts += [
        (f"{where} env {n!r}", v, False)
        for n, v in op.env.items()
        if isinstance(v, str) and is_template(v)
    ]
    for place, text, shell in texts:
        check_template(text, where=place, quote=shell)
        if builder is not None:
            builder.note_template(place, text, shell=shell)


def _env(task_id: str, env: Mapping[str, str | Secret] | None) -> dict[str, str | Secret]:
    out: dict[str, str | Secret] = {}
    for key, value in (env or {}).items():
        name = str(key)
        if not ENV_NAME.match(name) or name.startswith("ROTA_"):
            raise DefinitionError(f"task {task_id!r}: env name {name!r} is not allowed")
        out[name] = value if isinstance(value, Secret) else str(value)
    return out


def _mounts(task_id: str, mounts: Mapping[str | os.PathLike[str], str] | None) -> tuple[Mount, ...]:
    out = []
    for source, target in (mounts or {}).items():
        src = os.path.abspath(os.fspath(source))
        dst, ro = (target[:-3], True) if target.endswith(":ro") else (target, False)
        bad = [p for p in (src, dst) if ":" in p or "," in p or "\n" in p]
        if bad or not dst.startswith("/") or dst == "/rota" or dst.startswith("/rota/"):
            raise DefinitionError(
                f"task {task_id!r}: cannot mount {src!r} at {target!r} (targets are absolute "
                "paths outside /rota, without ':' or ',')"
            )
        out.append(Mount(src, dst, ro))
    return tuple(out)


def _resources(task_id: str, resources: Mapping[str, object] | None) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in (resources or {}).items():
        if key not in RESOURCE_FLAGS or isinstance(value, bool):
            raise DefinitionError(
                f"task {task_id!r}: unknown container resource {key!r} "
                f"(known: {', '.join(RESOURCE_FLAGS)})"
            )
        text = str(value)
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?[bkmgBKMG]?", text):
            raise DefinitionError(f"task {task_id!r}: resource {key}={value!r} is not a size")
        out.append((key, text))
    return tuple(out)


def _check_words(task_id: str, image: str, network: str | None, output: str) -> None:
    where = f"task {task_id!r}"
    if not isinstance(image, str) or not re.fullmatch(r"[A-Za-z0-9][^\s]*", image):
        raise DefinitionError(f"{where}: image must be an image name, got {image!r}")
    if network is not None and not NETWORK_NAME.match(network):
        raise DefinitionError(f"{where}: network {network!r} is not a network name")
    if output not in ("text", "json"):
        raise DefinitionError(f"{where}: output must be 'text' or 'json', got {output!r}")


def check_options(
    task_id: str,
    image: str,
    command: str | Sequence[str] = (),
    *,
    env: Mapping[str, str | Secret] | None = None,
    mounts: Mapping[str | os.PathLike[str], str] | None = None,
    workdir: str | None = None,
    resources: Mapping[str, object] | None = None,
    network: str | None = None,
    runtime: str | None = None,
    output: str = "text",
    shell: bool = False,
) -> ContainerOp:
    """The operator of a container task with these options (see :class:`ContainerTask`).

    Raises:
        DefinitionError: an option is not valid (one line naming the task).
    """
    _check_words(task_id, image, network, output)
    op = ContainerOp(
        image,
        _command(task_id, command, shell),
        shell,
        cast("dict[str, str]", _env(task_id, env)),
        _mounts(task_id, mounts),
        workdir,
        _resources(task_id, resources),
        network,
        runtime,
        output,
    )
    _check_templates(task_id, op)
    return op


class ContainerTask(TaskNode):
    """An operator-style container task:
    ``ContainerTask("train", "localhost/ml:1", ["python", "train.py", "--day", "{{ ds }}"])``.

    Args:
        task_id: The task's id.
        image: The image to run (pulled by the runtime if it is not there).
        command: The argv, a list of templates (a string is split into words first); with
            *shell*, one string run by ``/bin/sh -c`` in the container. Empty: the image's own.
        env: Variables for the container (templates, or ``rota.Secret`` values), besides the
            attempt's own (``ROTA_RUN_ID``, ``ROTA_PARAM_*``, ``ROTA_OUTPUT``...).
        mounts: Host path -> container path (``"/data:ro"`` for read-only).
        workdir: The working directory in the container.
        resources: Limits: ``cpus`` (``1.5``), ``memory`` (``"512m"``), ``pids`` (``256``).
        network: The container's network (``"none"``, ``"host"``, a network's name).
        runtime: ``"podman"``, ``"docker"`` or a path; default: ``ROTA_CONTAINER_RUNTIME``, else
            whichever is on ``PATH``.
        output: How ``$ROTA_OUTPUT`` is read: ``"text"`` or ``"json"``.
        shell: Run *command* with ``/bin/sh -c`` (values still never spliced into it).
        retries: As every task's.
        retry_delay: As every task's.
        timeout: At the timeout the container is removed and the attempt fails.
        tags: As every task's.
        trigger_rule: As every task's.
        on_success: As every task's.
        on_failure: As every task's.
        on_retry: As every task's.
        **options: The other options of every task (cache, pool, priority...).

    Raises:
        DefinitionError: an option is not valid (one line naming the task).
    """

    def __init__(
        self,
        task_id: str,
        image: str,
        command: str | Sequence[str] = (),
        *,
        env: Mapping[str, str | Secret] | None = None,
        mounts: Mapping[str | os.PathLike[str], str] | None = None,
        workdir: str | None = None,
        resources: Mapping[str, object] | None = None,
        network: str | None = None,
        runtime: str | None = None,
        output: str = "text",
        shell: bool = False,
        retries: RetryPolicy | int | None = None,
        retry_delay: timedelta | None = None,
        timeout: timedelta | float | None = None,
        tags: Iterable[str] = (),
        trigger_rule: TriggerRule | str = TriggerRule.ALL_SUCCESS,
        on_success: CallbackArg = None,
        on_failure: CallbackArg = None,
        on_retry: CallbackArg = None,
        **options: Any,
    ) -> None:
        op = check_options(
            task_id, image, command, env=env, mounts=mounts, workdir=workdir,
            resources=resources, network=network, runtime=runtime, output=output, shell=shell,
        )  # fmt: skip
        super().__init__(
            task_id, op, retries=retries, retry_delay=retry_delay, timeout=timeout, tags=tags,
            trigger_rule=trigger_rule, on_success=on_success, on_failure=on_failure,
            on_retry=on_retry, **options,
        )  # fmt: skip
