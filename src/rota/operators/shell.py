"""Shell tasks: ``ShellTask(id, command, env=..., cwd=...)`` run by bash in a real subprocess."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from rota.errors import DefinitionError, TaskTimeout
from rota.model.builder import FlowBuilder, TaskNode
from rota.model.callbacks import CallbackArg
from rota.model.policies import RetryPolicy, TriggerRule
from rota.model.secrets import MASK, Secret, is_sensitive_name
from rota.model.shellwords import REF_PREFIX
from rota.model.templating import ShellCommand, check_template, is_template, render, render_shell
from rota.operators.base import ExecContext, RunReads, digest
from rota.operators.streams import copy_lines, has_fileno, stdout_sink


class ShellCommandFailed(Exception):
    """Raised when a shell task's command exits with a non-zero code."""

    def __init__(self, command: str, code: int) -> None:
        self.code = code
        super().__init__(f"command exited with code {code}: {command}")


@dataclass(frozen=True, slots=True, eq=False)
class ShellOp:
    """Runs *command* with ``bash -c``; stdout and stderr go to the attempt's log.

    The output is the last non-empty line of stdout (None when it printed nothing), as Airflow's
    BashOperator pushes it. *env* is added to the inherited environment.

    *command* and the values of *env* are templates (``rota.model.templating``), rendered at each
    attempt: the command with every value a reference to an environment variable that holds it
    (bash expands it once, as one word of data), *env* values as they are.
    """

    command: str
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    kind: str = "shell"

    def describe(self) -> str:
        return self.command

    def code_hash(self) -> str:
        return digest(self.command, repr(sorted(self.env.items())), self.cwd or "")

    def execute(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Render and run the command.

        Raises:
            TemplateRenderError: the command or an env value does not render.
            ShellCommandFailed: the command exited with a non-zero code.
            TaskTimeout: the deadline passed (enforced here only when the command has its own
                process group).
        """
        del args, kwargs
        command, own_env = self.rendered(ctx)
        env = {**os.environ, **ctx.environ(), **own_env, **command.values}
        shell = shutil.which("bash") or "/bin/sh"
        sys.stdout.flush()
        print(f"[rota] $ {ctx.masker.redact(command.shown())}", file=sys.stderr)
        sys.stderr.flush()
        with subprocess.Popen(
            [shell, "-c", command.text],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=sys.stderr.fileno() if has_fileno(sys.stderr) else subprocess.PIPE,
            env=env,
            cwd=self.cwd,
            start_new_session=ctx.own_session,
        ) as proc:
            lines: list[str] = []
            sink = stdout_sink()
            pump = threading.Thread(target=copy_lines, args=(proc, lines, sink), daemon=True)
            pump.start()
            code = _wait(proc, ctx)
            pump.join()
            if proc.stderr is not None:
                sys.stderr.write(proc.stderr.read().decode(errors="replace"))
        sys.stdout.flush()
        if code is None:
            raise TaskTimeout(f"command timed out: {self.command}")
        if code != 0:
            raise ShellCommandFailed(self.command, code)
        return lines[-1] if lines else None

    def run_reads(self, ctx: ExecContext) -> RunReads:
        """The command reads every parameter and date (they are in its environment), and runs
        its templates as rendered: the command's text and values, the templated env values
        (``***`` under a secret's name; a ``rota.Secret`` is not read).

        Raises:
            TemplateRenderError: the command or an env value does not render.
        """
        variables = ctx.template_vars()
        where = f"task {ctx.task_id!r}"
        parts: dict[str, str] = {}
        if is_template(self.command):
            command = render_shell(self.command, variables, where=where)
            parts["command"] = command.text
            parts.update(command.values)
        for name, value in self.env.items():
            if isinstance(value, str) and is_template(value):
                text = render(value, variables, where=f"{where} env {name!r}")
                parts[f"env {name}"] = MASK if is_sensitive_name(name) else text
        return RunReads(True, parts)

    def rendered(self, ctx: ExecContext) -> tuple[ShellCommand, dict[str, str]]:
        """The command and *env* as this attempt runs them (text without tags is kept as is).

        Raises:
            TemplateRenderError: the command or an env value does not render.
        """
        variables = ctx.template_vars()
        where = f"task {ctx.task_id!r}"
        command = ShellCommand(self.command, {})
        if is_template(self.command):
            command = render_shell(self.command, variables, where=where)
        env = {
            name: render(value, variables, where=f"{where} env {name!r}")
            if is_template(value)
            else value
            for name, value in self.env.items()
        }
        return command, env


def _wait(proc: subprocess.Popen[bytes], ctx: ExecContext) -> int | None:
    """The exit code, or None when the deadline passed and the command's group was ended."""
    if ctx.deadline is None or not ctx.own_session:
        return proc.wait()
    try:
        return proc.wait(timeout=max(0.0, ctx.deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        end_group(proc.pid, grace=KILL_GRACE_S)
        proc.wait()
        return None


KILL_GRACE_S = 2.0
"""Seconds between SIGTERM and SIGKILL when a timed-out process group is ended."""


def end_group(pgid: int, *, grace: float) -> None:
    """SIGTERM process group *pgid*, then SIGKILL it if anything is left after *grace* seconds."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _check_templates(task_id: str, command: str, env: Mapping[str, str]) -> None:
    """Fail the definition on a template syntax error in the command or an env value.

    Raises:
        DefinitionError: one line naming the task, the problem and the template line.
    """
    where = f"task {task_id!r}"
    builder = FlowBuilder.current()
    if is_template(command):
        check_template(command, where=where, quote=True)
        if builder is not None:
            builder.note_template(where, command, shell=True)
    for name, value in env.items():
        if name.startswith(REF_PREFIX):
            raise DefinitionError(f"{where}: env name {name!r} is Rota's own: rename it")
        if is_template(value):
            check_template(value, where=f"{where} env {name!r}")
            if builder is not None:
                builder.note_template(f"{where} env {name!r}", value)


class ShellTask(TaskNode):
    """An operator-style shell task: ``ShellTask("get", "curl ... > data.csv", env={...})``."""

    def __init__(
        self,
        task_id: str,
        command: str,
        *,
        env: Mapping[str, str | Secret] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        retries: RetryPolicy | int | None = None,
        retry_delay: timedelta | None = None,
        timeout: timedelta | float | None = None,
        tags: Iterable[str] = (),
        trigger_rule: TriggerRule | str = TriggerRule.ALL_SUCCESS,
        on_success: CallbackArg = None,
        on_failure: CallbackArg = None,
        on_retry: CallbackArg = None,
        **cache_options: Any,
    ) -> None:
        if not isinstance(command, str) or not command.strip():
            raise DefinitionError(f"task {task_id!r}: command must be a non-empty string")
        # a rota.Secret value stays a reference: the worker reads it (rota.executors.secrets)
        env_map = {str(k): v if isinstance(v, Secret) else str(v) for k, v in (env or {}).items()}
        _check_templates(task_id, command, {k: v for k, v in env_map.items() if isinstance(v, str)})
        super().__init__(
            task_id,
            ShellOp(
                command,
                cast("dict[str, str]", env_map),
                os.fspath(cwd) if cwd is not None else None,
            ),
            retries=retries,
            retry_delay=retry_delay,
            timeout=timeout,
            tags=tags,
            trigger_rule=trigger_rule,
            on_success=on_success,
            on_failure=on_failure,
            on_retry=on_retry,
            **cache_options,
        )
