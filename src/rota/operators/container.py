"""Container tasks: ``ContainerTask(id, image, command, env=..., mounts=...)``, podman or docker.

The command is an argv list (a string is split into words as a shell would, before rendering),
run without a shell: each argument is a template whose values stay inside that argument, so
``$(touch pwned)`` in a parameter is passed as text. With ``shell=True`` the command is one string
run by ``/bin/sh -c`` in the container, rendered as a ``ShellTask``'s is (values travel as
environment variables the command references, never spliced into its text).

The run's artifact folder (when the artifact store is a local folder) is mounted at
:data:`RUN_DIR`; the container may write its output to ``$ROTA_OUTPUT``, which becomes the task's
output (its text, or the value it holds as JSON with ``output="json"``); otherwise the output is the
last non-empty line the container printed, as a ``ShellTask``'s. What the container prints goes
to the attempt's log as it is printed; its exit code decides the attempt. At the timeout, or when
the attempt's worker dies (a cancel, a killed runner), the container is removed (it runs with
``--rm`` and a reaper process; see :mod:`rota.operators.containerrt`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rota.errors import TaskTimeout
from rota.home import private_dir
from rota.model.secrets import MASK, is_sensitive_name
from rota.model.templating import is_template, render, render_shell
from rota.operators import containerrt as rt
from rota.operators.base import ExecContext, RunReads, digest
from rota.operators.liveends import ended_with_process
from rota.operators.streams import copy_lines, has_fileno, stdout_sink

RUN_DIR = "/rota/run"
"""Where the run's artifact folder is mounted in the container."""
OUT_DIR = "/rota/out"
"""Where the output folder is mounted when the artifact store is not a local folder."""
OUTPUT_SUFFIX = ".container-output"

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*\Z")
TEMPLATE_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
RESOURCE_FLAGS = {"cpus": "--cpus", "memory": "--memory", "pids": "--pids-limit"}
# names the runtime's own client reads: such env values are given in its argv, not its environment
_CLIENT_NAMES = re.compile(r"(PATH|HOME|TMPDIR|USER|XDG_.*|CONTAINERS?_.*|DOCKER_.*|LD_.*)\Z")


class ContainerFailed(Exception):
    """Raised when a container task's container exits with a non-zero code."""

    def __init__(self, image: str, code: int) -> None:
        self.code = code
        hint = " (the runtime could not run it: see the log)" if code in (125, 126, 127) else ""
        super().__init__(f"container {image} exited with code {code}{hint}")


@dataclass(frozen=True, slots=True)
class Mount:
    """A host folder or file bound into the container."""

    source: str
    target: str
    read_only: bool = False

    def flag(self) -> str:
        return f"{self.source}:{self.target}" + (":ro" if self.read_only else "")


@dataclass(frozen=True, slots=True, eq=False)
class ContainerOp:
    """Runs *image* with *command* in a fresh container (see the module's docstring)."""

    image: str
    command: tuple[str, ...]
    shell: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    workdir: str | None = None
    resources: tuple[tuple[str, str], ...] = ()
    network: str | None = None
    runtime: str | None = None
    output: str = "text"
    kind: str = "container"

    def describe(self) -> str:
        return f"{self.image}: {shlex.join(self.command)}"

    def code_hash(self) -> str:
        parts = [m.flag() for m in self.mounts] + [f"{k}={v}" for k, v in self.resources]
        return digest(
            self.image, repr(self.command), str(self.shell), repr(sorted(self.env.items())),
            repr(parts), self.workdir or "", self.network or "", self.output,
        )  # fmt: skip

    def execute(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Run the container and return its output.

        Raises:
            NoContainerRuntime: neither podman nor docker is found.
            TemplateRenderError: the command or an env value does not render.
            ContainerFailed: the container exited with a non-zero code.
            TaskTimeout: the deadline passed (the container is removed).
        """
        del args, kwargs
        runtime = rt.find_runtime(self.runtime, os.environ)
        argv, env = self.rendered(ctx)
        with tempfile.TemporaryDirectory(prefix="rota-container-") as scratch:
            out_host, out_mount = _output_place(ctx, scratch)
            out_host.unlink(missing_ok=True)  # a killed attempt's file is not this one's output
            env["ROTA_OUTPUT"] = f"{out_mount.target}/{out_host.name}"
            name = container_name(ctx)
            command = [runtime, "run", *self._flags(ctx, name, env, out_mount), self.image, *argv]
            client_env = {**os.environ, **{k: v for k, v in env.items() if not _in_argv(k)}}
            print(f"[rota] $ {ctx.masker.redact(shlex.join(command))}", file=sys.stderr)
            sys.stderr.flush()
            code, last = _run_client(command, client_env, ctx, runtime, name)
            if code != 0:
                raise ContainerFailed(self.image, code)
            return self._output(out_host, last)

    def leftovers_scope(self) -> str:
        return f"container:{self.runtime or ''}"

    def remove_leftovers(self, run_id: str) -> list[str]:
        """Remove every container of run *run_id* (its runner is dead; nothing of it runs).

        Raises:
            NoContainerRuntime: no runtime is found.
            OSError: the runtime cannot be started.
            subprocess.CalledProcessError: the runtime refused to list containers.
        """
        runtime = rt.find_runtime(self.runtime, os.environ)
        return rt.remove_leftovers(runtime, run_id, os.environ)

    def _flags(self, ctx: ExecContext, name: str, env: Mapping[str, str], out: Mount) -> list[str]:
        flags = ["--rm", "--init", "--name", name, "--stop-timeout", "2"]
        attempt = f"{ctx.run_id}/{ctx.task_id}/{ctx.try_number}"
        for key, value in ((rt.MANAGED, "1"), (rt.RUN, ctx.run_id), (rt.TASK, ctx.task_id)):
            flags += ["--label", f"{key}={value}"]
        flags += ["--label", f"{rt.ATTEMPT}={attempt}"]
        for mount in (out, *self.mounts):
            flags += ["--volume", mount.flag()]
        for key in env:  # the value is taken from the client's environment, out of its argv
            flags += ["--env", f"{key}={env[key]}" if _in_argv(key) else key]
        if self.workdir:
            flags += ["--workdir", self.workdir]
        if self.network:
            flags += ["--network", self.network]
        for key, value in self.resources:
            flags += [RESOURCE_FLAGS[key], value]
        return flags

    def _output(self, path: Path, last: str | None) -> Any:
        if not path.exists():
            return last
        text = path.read_text(encoding="utf-8", errors="replace")
        path.unlink(missing_ok=True)
        if self.output == "json":
            return json.loads(text)
        return text[:-1] if text.endswith("\n") else text

    def rendered(self, ctx: ExecContext) -> tuple[list[str], dict[str, str]]:
        """The container's argv and environment as this attempt runs them.

        Raises:
            TemplateRenderError: the command or an env value does not render.
        """
        variables = ctx.template_vars()
        where = f"task {ctx.task_id!r}"
        env = dict(ctx.environ())
        for name, value in self.env.items():
            where_env = f"{where} env {name!r}"
            templated = isinstance(value, str) and is_template(value)
            env[name] = render(value, variables, where=where_env) if templated else str(value)
        if self.shell:
            shell = render_shell(self.command[0], variables, where=where)
            env.update(shell.values)
            return ["/bin/sh", "-c", shell.text], env
        argv = [render(a, variables, where=where) if is_template(a) else a for a in self.command]
        return argv, env

    def run_reads(self, ctx: ExecContext) -> RunReads:
        """The container reads every parameter and date (they are in its environment), and its
        templates as rendered (``***`` under a secret's name).

        Raises:
            TemplateRenderError: the command or an env value does not render.
        """
        argv, env = self.rendered(ctx)
        parts = {f"argv {i}": a for i, a in enumerate(argv)}
        for name, value in self.env.items():
            if isinstance(value, str) and is_template(value):
                parts[f"env {name}"] = MASK if is_sensitive_name(name) else env[name]
        return RunReads(True, parts)


def container_name(ctx: ExecContext) -> str:
    """A name for the attempt's container, unique per (run, task, map index, try)."""
    key = digest(ctx.run_id, ctx.task_id, str(ctx.map_index), str(ctx.try_number))
    return f"rota-{key[:24]}"


def _in_argv(name: str) -> bool:
    return _CLIENT_NAMES.match(name) is not None


def _output_place(ctx: ExecContext, scratch: str) -> tuple[Path, Mount]:
    """Where the container's output file is on this machine, and the mount that shows it: the
    run's artifact folder when the artifact store is local, else a scratch folder."""
    stem = ctx.task_id if ctx.map_index < 0 else f"{ctx.task_id}@{ctx.map_index}"
    root = ctx.artifacts.removeprefix("file://")
    if root and "://" not in root:
        run_dir = Path(root).resolve() / ctx.run_id
        private_dir(run_dir)
        return run_dir / f"{stem}{OUTPUT_SUFFIX}", Mount(str(run_dir), RUN_DIR)
    return Path(scratch) / f"{stem}{OUTPUT_SUFFIX}", Mount(scratch, OUT_DIR)


def _run_client(
    command: list[str], env: Mapping[str, str], ctx: ExecContext, runtime: str, name: str
) -> tuple[int, str | None]:
    """Run the runtime's client to the container's end: its exit code and the last line the
    container printed.

    Raises:
        TaskTimeout: the deadline passed; the container was removed.
    """
    reaper = rt.Reaper.start(runtime, name, env)
    fired = False
    try:
        with (
            ended_with_process(reaper.fire),
            subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=sys.stderr.fileno() if has_fileno(sys.stderr) else subprocess.PIPE,
                env=dict(env),
                start_new_session=ctx.own_session,
            ) as proc,
        ):
            lines: list[str] = []
            pump = threading.Thread(
                target=copy_lines, args=(proc, lines, stdout_sink()), daemon=True
            )
            pump.start()
            code = _wait(proc, ctx.deadline)
            if code is None:
                fired = True
                reaper.fire()  # removes the container: the client then ends
                proc.wait()
            pump.join()
            if proc.stderr is not None:
                sys.stderr.write(proc.stderr.read().decode(errors="replace"))
    except BaseException:
        if not fired:
            reaper.fire()
        raise
    if not fired:
        reaper.dismiss()
    sys.stdout.flush()
    if code is None:
        raise TaskTimeout(f"container {name} timed out and was removed")
    return code, lines[-1] if lines else None


def _wait(proc: subprocess.Popen[bytes], deadline: float | None) -> int | None:
    """The client's exit code, or None when *deadline* passed first."""
    if deadline is None:
        return proc.wait()
    try:
        return proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return None
