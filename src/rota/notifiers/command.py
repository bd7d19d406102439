"""``CommandNotifier``: a command run with the callback context in its environment and, as JSON,
on its standard input; and the OS's argument limits it cuts long values to."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from rota.model.callbacks import CallbackContext


@dataclass(frozen=True)
class CommandNotifier:
    """Run *command* with ``bash -c``; the context is in ``ROTA_EVENT``, ``ROTA_RUN_ID``,
    ``ROTA_FLOW``, ``ROTA_TASK_ID``, ``ROTA_STATE``, ``ROTA_ERROR``, ``ROTA_TRACEBACK``,
    ``ROTA_FAILED_TASKS``, ``ROTA_URL`` and, as JSON, on stdin.

    For a run's end, ``ROTA_TASK_ID`` and ``ROTA_ERROR`` are the first failed task's id and error
    and ``ROTA_FAILED_TASKS`` lists every failed task, separated by spaces (a mapped task's
    failed instances as ``fit@2``); the JSON's ``failed_tasks`` has each one's error.
    ``ROTA_URL`` is the run's (or task's) page in the web UI when ``ROTA_UI_URL`` is set.

    An operating system limits the size of a new process's arguments and environment (Linux:
    ``os.sysconf("SC_ARG_MAX")`` in all, and 128 KiB for each string). ``ROTA_ERROR`` and
    ``ROTA_TRACEBACK`` are cut to fit, ending with a ``[rota: truncated ...]`` note, rather than
    the alert being lost; the JSON on stdin, which has no such limit, keeps the whole message.

    Raises (when called):
        subprocess.CalledProcessError: the command exits with a non-zero code.
    """

    command: str
    timeout: float = 60.0

    def __call__(self, ctx: CallbackContext) -> None:
        env = {
            **os.environ,
            "ROTA_EVENT": ctx.event,
            "ROTA_RUN_ID": ctx.run_id,
            "ROTA_FLOW": ctx.flow,
            "ROTA_TASK_ID": ctx.task_id or "",
            "ROTA_STATE": ctx.state,
            "ROTA_FAILED_TASKS": " ".join(f.task_id for f in ctx.failed_tasks),
            "ROTA_URL": ctx.url or "",
        }
        argv = ["bash", "-c", self.command]
        long_fields = {"ROTA_ERROR": ctx.error_message or "", "ROTA_TRACEBACK": ctx.traceback or ""}
        stdin = json.dumps(ctx.to_json()).encode()
        try:
            self._run(argv, {**env, **fit_environment(argv, env, long_fields)}, stdin)
        except OSError as err:
            if err.errno != errno.E2BIG:
                raise
            # the estimate was not enough (an OS with other rules): send only a short excerpt
            short = fit_environment(argv, env, long_fields, budget=_FALLBACK_BYTES)
            self._run(argv, {**env, **short}, stdin)

    def _run(self, argv: list[str], env: Mapping[str, str], stdin: bytes) -> None:
        subprocess.run(
            argv, input=stdin, env=env, timeout=self.timeout, check=True, capture_output=True
        )


LINUX_MAX_ARG_STRLEN: Final = 131072
"""Linux's limit on one argument or environment string, its terminating NUL included."""

_MARGIN: Final = 4096  # what execve adds besides the strings (the program's path, alignment)
_FALLBACK_BYTES: Final = 4096
_POINTER: Final = 8


def arg_limits() -> tuple[int, int | None]:
    """(the limit on arguments plus environment, in bytes; the limit on one string, or None)."""
    try:
        total = os.sysconf("SC_ARG_MAX")
    except (ValueError, OSError):
        total = -1
    if total <= 0:  # unknown: assume the smallest limit of the systems we know
        total = 262144
    return total, LINUX_MAX_ARG_STRLEN if sys.platform.startswith("linux") else None


def _cost(text: str) -> int:
    """Bytes one argv or environment string takes: itself, its NUL and its pointer."""
    return len(text.encode("utf-8", "surrogateescape")) + 1 + _POINTER


def truncate_bytes(text: str, limit: int) -> str:
    """*text* cut to at most *limit* UTF-8 bytes, ending with a note saying so when cut."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= limit:
        return text
    note = f"\n[rota: truncated to fit the OS argument limit; {len(data)} bytes in all]"
    keep = limit - len(note.encode())
    if keep <= 0:
        return note.encode()[: max(0, limit)].decode("utf-8", "ignore")
    return data[:keep].decode("utf-8", "ignore") + note


def fit_environment(
    argv: list[str],
    env: Mapping[str, str],
    fields: Mapping[str, str],
    *,
    budget: int | None = None,
) -> dict[str, str]:
    """*fields* (environment variables, most important first) cut so that a process started with
    *argv*, *env* and them stays within the OS's limits (:func:`arg_limits`).

    Args:
        argv: The command's arguments.
        env: The rest of its environment.
        fields: Long values that may be cut, in the order they get room.
        budget: At most this many bytes per field (a stricter cap than the OS's).
    """
    total, per_string = arg_limits()
    room = total - _MARGIN - sum(map(_cost, argv)) - sum(_cost(f"{k}={v}") for k, v in env.items())
    out: dict[str, str] = {}
    for name, value in fields.items():
        overhead = _cost(f"{name}=")
        limit = room - overhead
        if per_string is not None:
            limit = min(limit, per_string - len(name.encode()) - 2)
        if budget is not None:
            limit = min(limit, budget)
        out[name] = truncate_bytes(value, max(0, limit))
        room -= _cost(f"{name}={out[name]}")
    return out
