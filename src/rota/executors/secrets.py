"""The worker's side of secrets: read an attempt's ``rota.Secret`` values, and mask what it leaves.

Before an attempt runs, :func:`reveal_attempt` replaces every :class:`~rota.model.secrets.Secret`
in its parameters, arguments and operator (a ``ShellTask``'s ``env``) with the value of its
variable in the worker's environment. The attempt's :class:`~rota.model.secrets.Masker`
(:func:`attempt_masker`) knows those values and the values under sensitive names among the run's
parameters, the task's keyword arguments and its operator's ``env`` (a template there is masked
through what it renders from: a secret parameter). When the attempt's output capture ends,
:func:`mask_outcome` masks them in its log file and in its error, so neither the log nor the
store (nor a notifier, nor the CLI) ever holds them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rota.executors.base import AttemptSpec, ErrorInfo
from rota.home import create_exclusive
from rota.model.secrets import Masker, reveal
from rota.model.templating import is_template


def attempt_masker(spec: AttemptSpec) -> Masker:
    """A masker for the secrets *spec* names: sensitive parameters, keyword arguments and env
    values (Secrets join it when :func:`reveal_attempt` reads them)."""
    masker = Masker.of_params(spec.params)
    for name, value in spec.kwargs.items():
        masker.add_named(name, value)
    env = getattr(spec.op, "env", None)
    if isinstance(env, Mapping):
        for name, value in env.items():
            # a template's text is no secret; what it renders from is (a secret parameter)
            if not (isinstance(value, str) and is_template(value)):
                masker.add_named(name, value)
    return masker


def reveal_attempt(spec: AttemptSpec, environ: Mapping[str, str], masker: Masker) -> AttemptSpec:
    """*spec* with its Secrets read from *environ*; each value read is added to *masker*.

    Raises:
        SecretNotSet: a Secret's variable is not in *environ* (the message names it).
    """
    found: list[str] = []
    try:
        params = reveal(dict(spec.params), environ, found)
        args = reveal(spec.args, environ, found)
        kwargs = reveal(dict(spec.kwargs), environ, found)
        op = _reveal_fields(spec.op, environ, found)
    finally:
        for value in found:
            masker.add(value)
    if not found:
        return spec
    return dataclasses.replace(spec, params=params, args=args, kwargs=kwargs, op=op)


def _reveal_fields(op: Any, environ: Mapping[str, str], found: list[str]) -> Any:
    """An operator (a dataclass) with the Secrets in its fields read; itself when it has none."""
    if not dataclasses.is_dataclass(op) or isinstance(op, type):
        return op
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(op):
        if not f.init:
            continue
        value = getattr(op, f.name)
        revealed = reveal(value, environ, found)
        if revealed is not value:
            changes[f.name] = revealed
    return dataclasses.replace(op, **changes) if changes else op


def redact_file(path: str | os.PathLike[str], masker: Masker) -> bool:
    """Mask *masker*'s values in the text file at *path*, line by line.

    The masked copy is written next to it (a new 0600 file, see :func:`rota.home.create_exclusive`)
    and renamed over it, so a reader sees the old file or the new one. Bytes that are not UTF-8
    are kept as they are.

    Returns:
        Whether anything was masked (the file is left untouched otherwise).

    Raises:
        OSError: the file cannot be read, or its masked copy written.
    """
    if not masker:
        return False
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.masking")
    changed = False
    fd = create_exclusive(tmp)
    try:
        with os.fdopen(fd, "wb") as out, target.open("rb") as src:
            for raw in src:
                line = raw.decode("utf-8", "surrogateescape")
                masked = masker.redact(line)
                changed = changed or masked != line
                out.write(masked.encode("utf-8", "surrogateescape"))
        if changed:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return changed


def redact_error(error: ErrorInfo, masker: Masker) -> ErrorInfo:
    """*error* with *masker*'s values masked in its message and traceback."""
    return dataclasses.replace(
        error, message=masker.redact(error.message), traceback=masker.redact(error.traceback)
    )


def mask_outcome(masker: Masker, log_path: str | None, error: ErrorInfo | None) -> ErrorInfo | None:
    """Mask the secrets an attempt may have printed into *log_path* or put in *error*; return the
    masked error. A log that cannot be masked is removed rather than kept with a secret in it."""
    if log_path is not None and Path(log_path).exists():
        try:
            redact_file(log_path, masker)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(log_path)
    return redact_error(error, masker) if error is not None else None
