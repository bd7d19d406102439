"""Running one task here and now with given input values, its errors raised as they are.

For ``rota.testing.run_task`` and ``rota tasks test``: nothing is stored (no output is written,
no log file is made, no state is reported); the task prints where this process prints. Its
``rota.Secret`` values are read from the environment first, as a worker reads them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rota.executors.attempt import make_context
from rota.executors.base import AttemptSpec
from rota.executors.secrets import attempt_masker, reveal_attempt
from rota.model.branching import Choice, Chosen
from rota.model.dag import resolve
from rota.model.secrets import Masker


@dataclass(frozen=True, slots=True)
class DirectResult:
    """What a task run directly returned: its output, and a branch's choice."""

    value: Any
    choice: Choice | None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A task ready to run directly: its spec with its ``rota.Secret`` values read, the values
    its upstream references stand for, and the masker of its secrets (to show what it returns
    or raises with them masked)."""

    spec: AttemptSpec
    inputs: Mapping[str, Any]
    masker: Masker

    def call(self) -> DirectResult:
        """Run the task in this thread and return what it returned.

        Raises:
            KeyError: the inputs lack a value the task's arguments name.
            BaseException: whatever the task raises (``rota.Skip`` too).
        """
        args = resolve(self.spec.args, self.inputs)
        kwargs = resolve(dict(self.spec.kwargs), self.inputs)
        ctx = make_context(self.spec, own_session=True, masker=self.masker)
        value = self.spec.op.execute(ctx, args, kwargs)  # type: ignore[attr-defined]
        if isinstance(value, Chosen):  # a branch or short-circuit task: its output and choice
            return DirectResult(value.value, value.choice)
        return DirectResult(value, None)


def prepare(spec: AttemptSpec, inputs: Mapping[str, Any]) -> Prepared:
    """*spec* ready to run with *inputs* (upstream id, or ``id@N`` for element N of a mapped
    input, to value): its Secrets read from this process's environment.

    Raises:
        SecretNotSet: a ``rota.Secret``'s variable is not set.
    """
    masker = attempt_masker(spec)
    return Prepared(reveal_attempt(spec, os.environ, masker), inputs, masker)
