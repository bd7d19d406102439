"""``cache_on=``: which facts of the run a cached task's key includes.

A task's result can depend on the run it is in, not only on its code and inputs: a Python task
with a ``ctx`` parameter reads ``ctx.params`` and the run's dates, and a shell command has them in
its environment (``ROTA_PARAM_X``, ``ROTA_DS``...). Such a task's key includes every parameter and
the three run dates unless it declares what it reads, ``cache_on=("params.x", "ds")``; a task
that cannot read the run has none of them unless it declares some (``cache_on=("ds",)`` caches
once per day). Values rendered into a shell command's template are always in its key: they are
what the command runs.

The names are those of the template variables: ``params`` (every parameter), ``params.NAME``,
``logical_date``, ``data_interval_start``, ``data_interval_end``, ``ds``, ``ds_nodash``, ``ts``,
``ts_nodash`` and ``run_id`` (a task keyed on it is reused only within its run, by a resume).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from rota.errors import DefinitionError, PolicyError

DATES: Final = ("logical_date", "data_interval_start", "data_interval_end")
NAMES: Final = frozenset({"params", *DATES, "ds", "ds_nodash", "ts", "ts_nodash", "run_id"})
EVERYTHING: Final = ("params", *DATES)
"""What the key of a task that can read the run includes when it declares nothing."""

_PARAM = "params."


def coerce_on(names: Iterable[str] | str | None) -> tuple[str, ...] | None:
    """The names of a ``cache_on=`` option, checked; None when the option is not given.

    A single string is one name.

    Raises:
        PolicyError: not a list of names, or a name that is not a run fact.
    """
    if names is None:
        return None
    if isinstance(names, str):
        names = (names,)
    if not isinstance(names, Iterable):
        raise PolicyError(f"cache_on must be a list of names such as 'params.x', got {names!r}")
    out: list[str] = []
    for name in names:
        if not isinstance(name, str) or not _known(name):
            known = ", ".join(sorted(NAMES | {"params.NAME"}))
            raise PolicyError(f"cache_on: unknown name {name!r} (known: {known})")
        if name not in out:
            out.append(name)
    return tuple(out)


def _known(name: str) -> bool:
    if name.startswith(_PARAM):
        return bool(name[len(_PARAM) :])
    return name in NAMES


def check_params(task_id: str, names: Iterable[str], params: Mapping[str, Any]) -> None:
    """Refuse a ``params.NAME`` that names no parameter of the flow.

    Raises:
        DefinitionError: one line naming the task, the name and the flow's parameters.
    """
    for name in names:
        if name.startswith(_PARAM) and name[len(_PARAM) :] not in params:
            have = ", ".join(sorted(params)) or "none"
            raise DefinitionError(
                f"task {task_id!r}: cache_on names {name!r}, but the flow has no parameter "
                f"{name[len(_PARAM) :]!r} (its parameters: {have})"
            )


def facts(names: Iterable[str], variables: Mapping[str, Any]) -> dict[str, str]:
    """The value of each named fact, as text, from a template's *variables*.

    ``params`` stands for one ``params.NAME`` entry per parameter, so a key's parts say which
    parameter changed. Parameter values are canonical JSON (keys sorted).

    Args:
        names: Names checked by :func:`coerce_on`.
        variables: What :func:`rota.model.templating.template_vars` returns for the attempt.
    """
    params: Mapping[str, Any] = variables.get("params", {})
    out: dict[str, str] = {}
    for name in names:
        if name == "params":
            out.update({f"{_PARAM}{k}": _json(v) for k, v in params.items()})
        elif name.startswith(_PARAM):
            key = name[len(_PARAM) :]
            out[name] = _json(params[key]) if key in params else "(no such parameter)"
        else:
            out[name] = str(variables.get(name, ""))
    return dict(sorted(out.items()))


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


__all__ = ["DATES", "EVERYTHING", "NAMES", "check_params", "coerce_on", "facts"]
