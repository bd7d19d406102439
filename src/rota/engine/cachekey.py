"""Cache keys: what a task's code, inputs, constants and run facts hash to, and why two differ.

The default key of an attempt is a digest of the task's transitive code hash (its source and the
user code it reaches, plus the packages it uses), the user's ``version=``, the content hash of each
input it reads, its constant arguments, the facts of the run it can read (``cache_on=``, see
:mod:`rota.model.cacheon`) and its templates as the attempt renders them. A ``cache_key=``
function returns the key itself (a string), or named parts added to the default key (a mapping,
as :func:`rota.cache.file_content` does). A task whose key matches an earlier success reuses that
stored output instead of running.

The parts of a key are stored with the attempt for ``rota cache explain``. Values longer than
:data:`SHOWN_CHARS` are stored shortened, with a digest of the whole value; the key itself is
always computed from whole values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final

import cloudpickle

from rota.model.dag import Ref, TaskSpec
from rota.model.policies import CacheInputs
from rota.operators.base import digest
from rota.operators.codehash import CodeHash, code_hash

SHOWN_CHARS: Final = 200
"""Values longer than this are stored in a key's parts shortened, with a digest."""


class CacheKeyError(Exception):
    """Raised when a ``cache_key=`` function returns something that is not a key."""


def task_code(spec: TaskSpec) -> CodeHash:
    """The transitive code hash of a task (a shell task: its command, env and folder)."""
    fn = getattr(spec.op, "fn", None)
    version = spec.cache.version if spec.cache is not None else ""
    if fn is None:
        own = spec.op.code_hash()
        parts = {f"code:{spec.id}": own, **({"version": version} if version else {})}
        return CodeHash(digest(own, version), parts)
    return code_hash(fn, version)


def constants_digest(args: Any, kwargs: Mapping[str, Any]) -> str:
    """A digest of a task's constant arguments (its references to other tasks' outputs named)."""
    try:
        blob = cloudpickle.dumps((_strip(args), _strip(dict(sorted(kwargs.items())))), protocol=4)
    except Exception:  # something unpicklable: its repr is the best we have
        blob = repr((args, sorted(kwargs.items()))).encode()
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def _strip(value: Any) -> Any:
    if isinstance(value, Ref):
        return ("ref", value.task_id)
    if isinstance(value, list):
        return [_strip(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_strip(v) for v in value)
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items()}
    return value


def default_key(inputs: CacheInputs) -> str:
    """The key Rota computes from *inputs* when no ``cache_key=`` function replaces it.

    A task that reads nothing of the run and renders no template keeps the key it had before
    run facts were part of keys, so its cache entries stay valid.
    """
    ordered = "|".join(f"{k}={v}" for k, v in sorted(inputs.inputs.items()))
    parts = [inputs.code, inputs.version, ordered, inputs.constants]
    for label, named in (("run", inputs.run), ("rendered", inputs.rendered)):
        if named:
            parts.append(label)
            for name, value in sorted(named.items()):
                parts += (name, value)
    return digest(*parts)


def make_key(spec: TaskSpec, inputs: CacheInputs) -> tuple[str, dict[str, Any]]:
    """The cache key, and the parts a ``cache_key=`` function added (for the key's parts).

    Raises:
        CacheKeyError: the function returned neither a string nor a mapping of strings.
        Exception: whatever the function raised.
    """
    base = default_key(inputs)
    fn = spec.cache.key_fn if spec.cache is not None else None
    if fn is None:
        return base, {}
    result = fn(inputs)
    if isinstance(result, str):
        own = result if len(result) <= SHOWN_CHARS else digest(result)
        return f"user:{own}", {"user_key": shown(result)}
    if isinstance(result, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in result.items()
    ):
        extra = dict(sorted(result.items()))
        key = digest(base, "extra", *(text for item in extra.items() for text in item))
        return key, {"extra": {k: shown(v) for k, v in extra.items()}}
    raise CacheKeyError(
        "the cache_key function must return a string or a dict of strings, "
        f"got {type(result).__name__}"
    )


def shown(text: str) -> str:
    """*text* as a key's stored parts show it: shortened past :data:`SHOWN_CHARS`, with a digest."""
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:100]}... ({len(text)} characters, digest {digest(text)})"


def key_parts(inputs: CacheInputs, code: CodeHash, on: tuple[str, ...] | None) -> dict[str, Any]:
    """What ``rota cache explain`` shows: every part that went into a key (*on*: the task's
    ``cache_on=``, None when it declares none)."""
    parts: dict[str, Any] = {
        "code": inputs.code,
        "code_parts": dict(code.parts),
        "version": inputs.version,
        "inputs": dict(inputs.inputs),
        "constants": inputs.constants,
    }
    if on is not None:
        parts["cache_on"] = list(on)
    if inputs.run:
        parts["run"] = {k: shown(v) for k, v in inputs.run.items()}
    if inputs.rendered:
        parts["rendered"] = {k: shown(v) for k, v in inputs.rendered.items()}
    return parts


def explain_difference(now: Mapping[str, Any], before: Mapping[str, Any]) -> list[str]:
    """Which parts differ between two keys' parts, in words."""
    out = _code_changes(now, before)
    if now.get("version") != before.get("version"):
        out.append(f"version changed ({before.get('version')!r} -> {now.get('version')!r})")
    for name in _names(now, before, "inputs"):
        if now.get("inputs", {}).get(name) != before.get("inputs", {}).get(name):
            out.append(f"input {name} changed (its content hash differs)")
    if now.get("constants") != before.get("constants"):
        out.append("constant arguments changed")
    for group, what in (("run", "run fact"), ("rendered", "rendered"), ("extra", "cache_key part")):
        out += _value_changes(now.get(group) or {}, before.get(group) or {}, what)
    if now.get("user_key") != before.get("user_key"):
        out.append(
            f"cache_key result changed ({before.get('user_key')!r} -> {now.get('user_key')!r})"
        )
    if not out and now.get("code") != before.get("code"):
        out.append("code changed")
    return out


def _names(now: Mapping[str, Any], before: Mapping[str, Any], group: str) -> list[str]:
    return sorted(set(now.get(group) or {}) | set(before.get(group) or {}))


def _code_changes(now: Mapping[str, Any], before: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for name in _names(now, before, "code_parts"):
        a, b = now.get("code_parts", {}).get(name), before.get("code_parts", {}).get(name)
        if a != b:
            what = "added" if b is None else "removed" if a is None else "changed"
            out.append(f"{name} {what}" + (f" ({b} -> {a})" if name.startswith("package:") else ""))
    return out


def _value_changes(now: Mapping[str, str], before: Mapping[str, str], what: str) -> list[str]:
    out: list[str] = []
    for name in sorted(set(now) | set(before)):
        a, b = now.get(name), before.get(name)
        if a == b:
            continue
        if b is None:
            out.append(f"{what} {name} added ({a!r})")
        elif a is None:
            out.append(f"{what} {name} removed (was {b!r})")
        else:
            out.append(f"{what} {name} changed ({b!r} -> {a!r})")
    return out
