"""Secrets: which values are never written down in clear, and the ``***`` shown in their place.

What is secret:

* a value under a *sensitive name*: a name containing one of :data:`SENSITIVE_WORDS`
  (case-insensitive, ``-`` read as ``_``). The name may be a flow parameter's, a key's inside a
  dict parameter (at any depth), a task's keyword argument's or a ``ShellTask`` env variable's.
  Everything under a sensitive name is secret (the whole of a dict called ``credentials``), except
  ``None`` and booleans, which carry no secret.
* any :class:`Secret`: a reference to an environment variable, read by the worker when an attempt
  runs. Only the variable's name is ever stored or sent anywhere.

Where it is masked:

* The store keeps :func:`stored_params`: a secret becomes a marker saying whether the run used the
  flow's default or was given the value; a :class:`Secret` stays a reference. :func:`run_params`
  turns that back into values for a resume (or a driver process), taking what the store does not
  keep from ``-p`` or from the environment (``ROTA_PARAM_<NAME>``, see :func:`param_env_name`).
* People and notifiers see :func:`display_params`: every secret is ``***``.
* Free text (attempt logs, error messages and tracebacks, the callbacks log) goes through a
  :class:`Masker`, which knows the secret values of one run or attempt and replaces each of them
  wherever it appears, inside longer text too, also in the forms a value takes quoted for a shell,
  escaped in JSON or URL-encoded, and line by line for a value of several lines. Values shorter
  than :data:`MIN_TEXT_LENGTH` characters are not searched for in text (a one-character password
  would mask that character everywhere); they are masked where they stand as values.

Nothing here does I/O: environments are passed in as mappings.
"""

from __future__ import annotations

import json
import re
import shlex
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from rota.errors import DefinitionError, ParameterError, SecretNotSet

if TYPE_CHECKING:  # model.dag imports model.callbacks, which imports this module
    from rota.model.dag import ParamSpec

SENSITIVE_WORDS: Final = (
    "secret",
    "password",
    "passwd",
    "token",
    "api_key",
    "apikey",
    "private_key",
    "credential",
)
"""A name containing one of these (case-insensitive) holds a secret."""

MASK: Final = "***"
"""What is shown instead of a secret."""

MIN_TEXT_LENGTH: Final = 5
"""Secret values shorter than this are not searched for inside text."""

_SECRET_KEY: Final = "$rota_secret"  # {"$rota_secret": "VAR"}: a Secret, stored as a reference
_REDACTED_KEY: Final = "$rota_redacted"  # {"$rota_redacted": "given" | "default"}: not stored
GIVEN: Final = "given"
DEFAULT: Final = "default"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def is_sensitive_name(name: object) -> bool:
    """Whether a value called *name* is a secret (see :data:`SENSITIVE_WORDS`)."""
    low = str(name).lower().replace("-", "_")
    return any(word in low for word in SENSITIVE_WORDS)


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret read from the environment variable *name* when an attempt runs; never stored.

    Use it as a flow parameter's value or default, a task argument, or a ``ShellTask`` env value:
    ``ShellTask("push", 'curl -H "Authorization: $TOKEN" ...', env={"TOKEN": Secret("TOKEN")})``.
    The worker replaces it with the variable's value just before the task runs (a missing variable
    fails the attempt with a one-line error naming it); the store, logs, notifiers and the CLI
    only ever see ``Secret('TOKEN')`` or ``***``.

    Raises:
        DefinitionError: *name* is not an environment variable's name.
    """

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _ENV_NAME.match(self.name):
            raise DefinitionError(
                f"rota.Secret needs the name of an environment variable, got {self.name!r}"
            )

    def __repr__(self) -> str:
        return f"Secret({self.name!r})"

    def reveal(self, environ: Mapping[str, str]) -> str:
        """The variable's value in *environ*.

        Raises:
            SecretNotSet: *environ* has no such variable.
        """
        try:
            return environ[self.name]
        except KeyError:
            raise SecretNotSet(self.name) from None


def reveal(value: Any, environ: Mapping[str, str], found: list[str] | None = None) -> Any:
    """*value* with every :class:`Secret` in it (also inside lists, tuples and dicts) replaced by
    its variable's value in *environ*; the same object when it holds none.

    Args:
        value: Anything; other objects are not looked into.
        environ: Where the variables are read.
        found: Collects the values read (for a :class:`Masker`).

    Raises:
        SecretNotSet: a variable is missing.
    """
    if isinstance(value, Secret):
        text = value.reveal(environ)
        if found is not None:
            found.append(text)
        return text
    if isinstance(value, dict):
        items = {k: reveal(v, environ, found) for k, v in value.items()}
        return items if any(items[k] is not v for k, v in value.items()) else value
    if type(value) in (list, tuple):
        seq = [reveal(v, environ, found) for v in value]
        changed = any(a is not b for a, b in zip(seq, value, strict=True))
        return type(value)(seq) if changed else value
    return value


def _is_marker(value: object) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    key, inner = next(iter(value.items()))
    return key in (_SECRET_KEY, _REDACTED_KEY) and isinstance(inner, str)


def _harmless(value: object) -> bool:
    return value is None or isinstance(value, bool)


def _transform(value: Any, sensitive: bool, secret: Callable[[Any], Any]) -> Any:
    """*value* with *secret* applied to each Secret, stored marker and sensitive leaf in it."""
    if isinstance(value, Secret) or _is_marker(value):
        return secret(value)
    if isinstance(value, Mapping):
        return {
            k: _transform(v, sensitive or is_sensitive_name(k), secret) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        items = [_transform(v, sensitive, secret) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if sensitive and not _harmless(value):
        return secret(value)
    return value


def _same(a: object, b: object) -> bool:
    try:
        return a is b or bool(a == b)
    except Exception:  # an __eq__ that raises or returns an array: not the same
        return False


def stored_params(
    values: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The form of a run's parameters the store keeps: no secret in clear.

    A secret becomes a marker: ``default`` when the parameter's value equals its entry in
    *defaults* (a resume takes it from the flow again), else ``given`` (a resume must be given it
    again). A :class:`Secret` is kept as a reference to its variable. Applying this to its own
    result changes nothing.

    Args:
        values: The run's parameters.
        defaults: The flow's defaults (parameters without one left out).
    """
    defaults = defaults or {}
    out: dict[str, Any] = {}
    for name, value in values.items():
        origin = DEFAULT if name in defaults and _same(value, defaults[name]) else GIVEN

        def secret(v: Any, origin: str = origin) -> Any:
            if isinstance(v, Secret):
                return {_SECRET_KEY: v.name}
            return v if _is_marker(v) else {_REDACTED_KEY: origin}

        out[name] = _transform(value, is_sensitive_name(name), secret)
    return out


def display_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as people and notifiers see them: every secret (a value under a sensitive name,
    a :class:`Secret`, a stored marker) as ``***``. Takes values or their stored form."""
    return {
        name: _transform(value, is_sensitive_name(name), lambda _: MASK)
        for name, value in params.items()
    }


def _origins(value: Any) -> set[str]:
    found: set[str] = set()

    def note(v: Any) -> Any:
        if isinstance(v, dict) and _REDACTED_KEY in v:
            found.add(v[_REDACTED_KEY])
        return v

    _transform(value, False, note)
    return found


def unstored_params(stored: Mapping[str, Any]) -> dict[str, str]:
    """The parameters of a stored run whose value the store does not keep, with where the run
    took each from: ``given`` for the run, or the flow's ``default``."""
    out: dict[str, str] = {}
    for name, value in stored.items():
        origins = _origins(value)
        if origins:
            out[name] = GIVEN if GIVEN in origins else DEFAULT
    return out


def given_secrets(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    """Names of parameters in *values* holding a secret given in clear (not the flow's default,
    not a :class:`Secret`): what a run driven later by another process could not be given."""
    found = unstored_params(stored_params(values, defaults))
    return sorted(name for name, origin in found.items() if origin == GIVEN)


def param_env_name(name: str) -> str:
    """The environment variable a parameter is exported to tasks as, and read from on resume."""
    return "ROTA_PARAM_" + re.sub("[^A-Z0-9]", "_", name.upper())


def param_env_text(value: Any) -> str:
    """A parameter's value as its environment variable holds it: text as is, else JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def secret_environment(values: Mapping[str, Any]) -> dict[str, str]:
    """``ROTA_PARAM_<NAME>`` variables for the parameters the store would not keep, so that a
    process started with them (a backfill's driver) can rebuild a run's parameters."""
    needed = unstored_params(stored_params(values))
    return {param_env_name(name): param_env_text(values[name]) for name in needed}


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if _is_marker(value) and _SECRET_KEY in value:
            return Secret(value[_SECRET_KEY])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def run_params(
    run_id: str,
    stored: Mapping[str, Any],
    specs: Sequence[ParamSpec],
    given: Mapping[str, Any],
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """The values to build stored run *run_id*'s flow with again.

    Stored values are used as they are (Secret references included). A parameter the store does
    not keep takes, in order: its value in *given* (``-p``), its ``ROTA_PARAM_<NAME>`` variable in
    *environ* (read like ``-p``), or the flow's default when the run used the default.

    Raises:
        ParameterError: *given* names a parameter the store keeps, or a value cannot be found (the
            message names the parameter and how to give it).
    """
    from rota.model.dag import REQUIRED
    from rota.model.params import parse_param

    unstored = unstored_params(stored)
    kept = sorted(set(given) - set(unstored))
    if kept:
        raise ParameterError(
            f"parameter {kept[0]!r} is stored with run {run_id}: a resume is given again only "
            "the secret parameters the store does not keep"
        )
    by_name = {spec.name: spec for spec in specs}
    out: dict[str, Any] = {}
    for name, value in stored.items():
        origin = unstored.get(name)
        spec = by_name.get(name)
        env_name = param_env_name(name)
        if origin is None:
            out[name] = _decode(value)
        elif name in given:
            out[name] = given[name]
        elif spec is not None and env_name in environ:
            out[name] = parse_param(spec, environ[env_name])
        elif spec is not None and origin == DEFAULT and spec.default is not REQUIRED:
            out[name] = spec.default
        else:
            raise ParameterError(
                f"run {run_id} was given secret parameter {name!r}, which the store does not "
                f"keep: give it again (rota resume {run_id} -p {name}=...) or set {env_name}"
            )
    return out


class Masker:
    """Replaces known secret values with ``***`` wherever they appear in text."""

    __slots__ = ("_pattern", "_values")

    def __init__(self, values: Iterable[Any] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for value in values:
            self.add(value)

    @classmethod
    def of_params(cls, params: Mapping[str, Any]) -> Masker:
        """A masker for the secret values under sensitive names in *params* (Secrets, which are
        not read here, aside)."""
        masker = cls()
        for name, value in params.items():
            masker.add_named(name, value)
        return masker

    def __bool__(self) -> bool:
        return bool(self._values)

    def add(self, value: Any) -> None:
        """Mask *value*: its text, its forms quoted for a shell, escaped in JSON and URL-encoded,
        and each of its lines."""
        if _harmless(value) or isinstance(value, Secret) or _is_marker(value):
            return
        text = value if isinstance(value, str) else str(value)
        forms = {text, json.dumps(text)[1:-1], shlex.quote(text), urllib.parse.quote(text, safe="")}
        forms.update(line.strip() for line in text.splitlines())
        new = {form for form in forms if len(form) >= MIN_TEXT_LENGTH} - self._values
        if new:
            self._values |= new
            self._pattern = None

    def add_named(self, name: object, value: Any) -> None:
        """Mask the secrets in *value* called *name*: all of it when *name* is sensitive, else what
        is under sensitive keys inside it."""

        def collect(v: Any) -> Any:
            self.add(v)
            return v

        _transform(value, is_sensitive_name(name), collect)

    def add_secrets(self, value: Any, environ: Mapping[str, str]) -> None:
        """Mask the values the :class:`Secret` objects in *value* have in *environ* (those set)."""

        def collect(v: Any) -> Any:
            if isinstance(v, Secret) and v.name in environ:
                self.add(environ[v.name])
            return v

        _transform(value, False, collect)

    def redact(self, text: str) -> str:
        """*text* with every known value replaced by ``***`` (longer values first)."""
        if not self._values or not text:
            return text
        if self._pattern is None:
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
        return self._pattern.sub(MASK, text)
