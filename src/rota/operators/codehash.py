"""The code part of a cache key: a task's own source plus, transitively, the user code it calls.

Walking the names a function's bytecode refers to (also inside nested functions and
comprehensions), it includes the normalised source of every function and class of the user's
own modules it reaches (recursively), and the version of every third-party package it uses,
so editing a helper, or upgrading scikit-learn, changes the key. Standard-library code counts by
the Python version.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import re
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from rota.operators.base import digest, source_hash

_SYSTEM_DIRS = tuple(
    {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
)


@dataclass(frozen=True, slots=True)
class CodeHash:
    """A digest of code and what it is made of: ``{"code:mod.fn": hash, "package:x": version}``."""

    digest: str
    parts: dict[str, str]


def code_hash(fn: Callable[..., Any], version: str = "") -> CodeHash:
    """The transitive code hash of *fn* (see the module docstring), with a user *version*."""
    parts: dict[str, str] = {}
    _walk(fn, parts, set())
    if version:
        parts["version"] = version
    text = "\n".join(f"{k}={v}" for k, v in sorted(parts.items()))
    return CodeHash(digest(text), parts)


def _walk(fn: Any, parts: dict[str, str], seen: set[int]) -> None:
    fn = getattr(fn, "fn", fn)  # a @task function: its plain function
    if id(fn) in seen:
        return
    seen.add(id(fn))
    module = _stable_module_name(getattr(fn, "__module__", "?"))
    name = f"{module}.{getattr(fn, '__qualname__', repr(fn))}"
    if isinstance(fn, type):
        parts[f"code:{name}"] = _class_hash(fn)
        for member in vars(fn).values():
            if isinstance(member, types.FunctionType):
                _follow_globals(member, parts, seen)
        return
    parts[f"code:{name}"] = source_hash(fn)
    _follow_globals(fn, parts, seen)


def _follow_globals(fn: types.FunctionType, parts: dict[str, str], seen: set[int]) -> None:
    namespace = getattr(fn, "__globals__", {})
    code = getattr(fn, "__code__", None)
    if code is None:
        return
    for name in _names(code):
        if name in namespace:
            _visit(namespace[name], name, parts, seen)
        elif _known_package(name.split(".", 1)[0]):  # an import inside the function
            _package(name, parts)


def _visit(obj: Any, name: str, parts: dict[str, str], seen: set[int]) -> None:
    if obj is None:
        return
    if isinstance(obj, types.ModuleType):
        if _is_user(obj):
            return  # attributes used through the module are reached by name below
        _package(obj.__name__, parts)
        return
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str):
        return
    mod = sys.modules.get(module)
    if mod is None or not _is_user(mod):
        _package(module, parts)
        return
    if isinstance(obj, types.FunctionType | type) or hasattr(obj, "fn"):
        _walk(obj, parts, seen)


def _stable_module_name(module: str) -> str:
    """A flow file's module name without the digest of its path, so keys survive a move."""
    match = re.fullmatch(r"rota_flow_(.+)_[0-9a-f]{8}", module)
    return match.group(1) if match else module


@functools.cache
def _known_package(top: str) -> bool:
    return top in sys.stdlib_module_names or top in _distributions()


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def _names(code: types.CodeType) -> Iterator[str]:
    """Global and attribute names a code object (and the code objects nested in it) uses."""
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


def _is_user(module: types.ModuleType) -> bool:
    """A module of the user's own code: a file outside the standard library and site-packages."""
    path = getattr(module, "__file__", None)
    if not path:
        return False
    return not path.startswith(_SYSTEM_DIRS) and not module.__name__.startswith("rota.")


def _package(module: str, parts: dict[str, str]) -> None:
    top = module.split(".", 1)[0]
    if top in ("builtins", "__main__") or not top:
        return
    parts[f"package:{top}"] = _version(top)


@functools.cache
def _version(top: str) -> str:
    if top in sys.stdlib_module_names:
        return f"python {sys.version_info.major}.{sys.version_info.minor}"
    dists = _distributions().get(top, [])
    for dist in dists:
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown version"


def _class_hash(cls: type) -> str:
    try:
        return digest(inspect.getsource(cls))
    except (OSError, TypeError):
        return digest(cls.__qualname__)
