"""Flow parameters: merging a run's values with the defaults, and parsing ``-p key=value``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rota.errors import ParameterError
from rota.model.dag import REQUIRED, ParamSpec


def merge_params(
    flow: str, specs: tuple[ParamSpec, ...], given: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The run's parameters: the defaults overridden by *given*.

    Raises:
        ParameterError: a given name is not a parameter, or a required one is missing.
    """
    given = dict(given or {})
    known = {p.name for p in specs}
    unknown = sorted(set(given) - known)
    if unknown:
        names = ", ".join(sorted(known)) or "none"
        raise ParameterError(
            f"unknown parameter {unknown[0]!r} for flow {flow!r} (parameters: {names})"
        )
    out: dict[str, Any] = {}
    for p in specs:
        if p.name in given:
            out[p.name] = given[p.name]
        elif p.default is REQUIRED:
            raise ParameterError(f"flow {flow!r} needs parameter {p.name!r} (-p {p.name}=...)")
        else:
            out[p.name] = p.default
    return out


def parse_param(spec: ParamSpec, raw: str) -> Any:
    """Convert a ``-p name=value`` string to the type of the parameter's default.

    Without a default (or a None default) the value is read as JSON when it parses, else as text.

    Raises:
        ParameterError: the text cannot be converted to the default's type.
    """
    default = spec.default
    try:
        if isinstance(default, bool):
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int | float):
            return type(default)(raw)
        if isinstance(default, str):
            return raw
        if isinstance(default, list | dict):
            value = json.loads(raw)
            if not isinstance(value, type(default)):
                raise ValueError(raw)
            return value
    except ValueError:
        kind = type(default).__name__
        raise ParameterError(f"parameter {spec.name!r} expects {kind}, got {raw!r}") from None
    try:
        return json.loads(raw)
    except ValueError:
        return raw
