"""Flow parameters: merging a run's values with the defaults, and parsing ``-p key=value``.

A run's parameters are data that the store keeps as JSON, that workers receive and that shell
tasks see in environment variables, so a value given by a person must be representable in all of
them. Refused, each with a one-line :class:`~rota.errors.ParameterError`:

* a NUL character anywhere (a ``\\u0000`` escape in JSON): no environment variable, file name or
  PostgreSQL text can hold one;
* NaN and the infinities (``nan``, ``inf``, ``-Infinity``, ``1e999``), for float parameters and
  wherever a value is read as JSON: they are not JSON (Python's ``json`` module accepts them by
  default, other JSON readers and PostgreSQL do not), and Airflow's params, JSON too, have none;
* JSON nested more than :data:`MAX_DEPTH` levels deep: a deeper value is no configuration, and
  past Python's recursion limit it would crash whatever walks it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any, Final

from rota.errors import ParameterError
from rota.model.dag import REQUIRED, ParamSpec
from rota.model.secrets import is_sensitive_name

MAX_DEPTH: Final = 100
"""The deepest nesting of lists and objects a parameter's value may have."""


def merge_params(
    flow: str, specs: tuple[ParamSpec, ...], given: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The run's parameters: the defaults overridden by *given*.

    Raises:
        ParameterError: a given name is not a parameter, a required one is missing, or a given
            value holds a NUL, a NaN or an infinity, or is nested too deep.
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
            out[p.name] = check_value(p.name, given[p.name])
        elif p.default is REQUIRED:
            raise ParameterError(f"flow {flow!r} needs parameter {p.name!r} (-p {p.name}=...)")
        else:
            out[p.name] = p.default
    return out


def parse_param(spec: ParamSpec, raw: str) -> Any:
    """Convert a ``-p name=value`` string to the type of the parameter's default.

    Without a default (or a None default) the value is read as JSON when it parses, else as text.

    Raises:
        ParameterError: the text cannot be converted to the default's type, or the value holds a
            NUL, a NaN or an infinity, or is JSON nested more than MAX_DEPTH levels deep.
    """
    return check_value(spec.name, _convert(spec, raw))


def _convert(spec: ParamSpec, raw: str) -> Any:
    default = spec.default
    try:
        if isinstance(default, bool):
            return _boolean(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return _finite(spec.name, float(raw), raw)
        if isinstance(default, str):
            return raw
        if isinstance(default, list | dict):
            value = read_json(spec.name, raw)
            if not isinstance(value, type(default)):
                raise ValueError(raw)
            return value
    except ValueError:
        kind = type(default).__name__
        got = _shown(spec.name, raw)
        raise ParameterError(f"parameter {spec.name!r} expects {kind}, got {got}") from None
    try:
        return read_json(spec.name, raw)
    except ValueError:
        return raw


def _boolean(raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def read_json(name: str, raw: str) -> Any:
    """*raw* parsed as strict JSON for parameter *name*.

    Raises:
        ValueError: *raw* is not JSON.
        ParameterError: it is nested more than MAX_DEPTH levels deep, or uses NaN or Infinity.
    """
    _check_depth(name, raw)
    return json.loads(raw, parse_constant=lambda word: _refuse_constant(name, word))


def _refuse_constant(name: str, word: str) -> Any:
    raise ParameterError(
        f"parameter {name!r}: {word} is not JSON (a run's parameters are stored as JSON, which "
        "has no NaN or infinities)"
    )


def _finite(name: str, value: float, raw: str) -> float:
    if not math.isfinite(value):
        raise ParameterError(
            f"parameter {name!r} expects a finite float, got {_shown(name, raw)} "
            "(NaN and infinities are not JSON, and the run's parameters are stored as JSON)"
        )
    return value


def _check_depth(name: str, raw: str) -> None:
    """Refuse *raw* if its brackets nest more than MAX_DEPTH deep, before any parser recurses."""
    depth = 0
    in_string = escaped = False
    for char in raw:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise ParameterError(
                    f"parameter {name!r}: JSON nested more than {MAX_DEPTH} levels deep"
                )
        elif char in "]}":
            depth -= 1


def check_value(name: str, value: Any) -> Any:
    """Return *value* if it can be a run's parameter: no NUL, NaN or infinity in it, nested at
    most MAX_DEPTH deep (lists, tuples and dicts are looked into; other objects are left alone).

    Raises:
        ParameterError: naming *name* and what is wrong.
    """
    for item in _leaves(name, value, 0):
        if isinstance(item, str) and "\x00" in item:
            raise ParameterError(
                f"parameter {name!r} contains a NUL character (\\u0000), which no environment "
                "variable, file name or stored text can hold"
            )
        if isinstance(item, float) and not math.isfinite(item):
            raise ParameterError(
                f"parameter {name!r} holds {item!r}: NaN and infinities are not JSON, and the "
                "run's parameters are stored as JSON"
            )
    return value


def _leaves(name: str, value: Any, depth: int) -> Iterator[Any]:
    if isinstance(value, list | tuple | dict):
        if depth >= MAX_DEPTH:
            raise ParameterError(f"parameter {name!r}: nested more than {MAX_DEPTH} levels deep")
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        for item in items:
            yield from _leaves(name, item, depth + 1)
    else:
        yield value


def _shown(name: str, raw: str) -> str:
    """*raw* for an error message: quoted, and cut short if long; ``***`` for a secret's."""
    if is_sensitive_name(name):
        return "*** (a secret's value is not shown)"
    return repr(raw) if len(raw) <= 80 else f"{raw[:60]!r}... ({len(raw)} characters)"
