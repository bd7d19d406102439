"""The worker's side of secrets: read an attempt's ``rota.Secret`` values, and mask what it leaves.

Before an attempt runs, :func:`reveal_attempt` replaces every :class:`~rota.model.secrets.Secret`
in its parameters, arguments and operator (a ``ShellTask``'s ``env``) with the value of its
variable in the worker's environment. The attempt's :class:`~rota.model.secrets.Masker`
(:func:`attempt_masker`) knows those values and the values under sensitive names among the run's
parameters, the task's keyword arguments and its operator's ``env`` (a template there is masked
through what it renders from: a secret parameter). The attempt's log is masked with it line by
line as it is written (:class:`rota.executors.logsink.LogSink`), and its error by
:func:`redact_error`, so neither the log nor the store (nor a notifier, nor the CLI) ever holds
them, whatever ends the attempt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from rota.executors.base import AttemptSpec, ErrorInfo
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


def redact_error(error: ErrorInfo, masker: Masker) -> ErrorInfo:
    """*error* with *masker*'s values masked in its message and traceback."""
    return dataclasses.replace(
        error, message=masker.redact(error.message), traceback=masker.redact(error.traceback)
    )
