"""The kinds of value a setting takes: each reads a raw value and returns it typed, or says why not.

A raw value is a string (a ``ROTA_*`` variable, a command-line flag) or what ``tomllib`` read from
a configuration file (a string, a number, a boolean). A reader is called with the raw value and
the folder relative paths are read from (the file's folder, or the working folder); it returns
the typed value or raises :class:`BadValue` with the problem alone ("must be an integer, got
'abc'"), which :mod:`rota.config` prefixes with where the value came from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

T = TypeVar("T")

Reader = Callable[[Any, Path], T]
"""Reads one raw value (relative paths against the folder given); raises BadValue."""

MAX_SECONDS: Final = 10**9
"""Beyond this a number of seconds is a typo (and overflows libpq's timeouts)."""


class BadValue(ValueError):
    """Raised by a reader when a raw value is not a valid value of its setting; the message is
    the problem alone, to follow the setting's name."""


def _shown(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."


def text(raw: Any, base: Path) -> str:
    """Any string (stripped of surrounding blanks)."""
    del base
    if not isinstance(raw, str):
        raise BadValue(f"must be a string, got {_shown(raw)}")
    return raw.strip()


def integer(*, minimum: int, note: str = "") -> Reader[int]:
    """A whole number >= *minimum* (*note* says what a special value means, e.g. 0)."""

    def read(raw: Any, base: Path) -> int:
        del base
        if isinstance(raw, str) and raw.strip().lstrip("+-").isdigit():
            raw = int(raw.strip())
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise BadValue(f"must be an integer, got {_shown(raw)}")
        if raw < minimum:
            raise BadValue(f"must be >= {minimum}{note}, got {raw}")
        return raw

    return read


def seconds(*, minimum: float = 0.0, note: str = "") -> Reader[float]:
    """A number of seconds >= *minimum* and finite (*note* says what 0 means, if anything)."""

    def read(raw: Any, base: Path) -> float:
        del base
        value: Any = raw
        if isinstance(raw, str):
            try:
                value = float(raw.strip())
            except ValueError:
                raise BadValue(f"must be a number of seconds, got {_shown(raw)}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadValue(f"must be a number of seconds, got {_shown(raw)}")
        if not (math.isfinite(value) and minimum <= value < MAX_SECONDS):
            raise BadValue(f"must be seconds >= {minimum:g}{note}, got {value:g}")
        return float(value)

    return read


def choice(options: Sequence[str]) -> Reader[str]:
    """One of *options* (the message lists them)."""

    def read(raw: Any, base: Path) -> str:
        value = text(raw, base)
        if value not in options:
            raise BadValue(f"must be one of {', '.join(options)}; got {_shown(value)}")
        return value

    return read


def folder(raw: Any, base: Path) -> Path | None:
    """A folder: ``~`` expanded, a relative path read against *base*; empty means none."""
    value = text(raw, base)
    if not value:
        return None
    if "\x00" in value:
        raise BadValue(f"must be a path, got {_shown(value)}")
    return (base / Path(value).expanduser()).absolute()


def location(raw: Any, base: Path) -> str:
    """A folder or an fsspec URL (``s3://bucket/prefix``); a relative folder read against *base*."""
    value = text(raw, base)
    if not value or "://" in value:
        return value
    found = folder(value, base)
    return str(found) if found is not None else ""


__all__ = [
    "MAX_SECONDS",
    "BadValue",
    "Reader",
    "choice",
    "folder",
    "integer",
    "location",
    "seconds",
    "text",
]


def web_url(raw: Any, base: Path) -> str:
    """An ``http://`` or ``https://`` address (empty: none), without a trailing ``/``."""
    found = text(raw, base).rstrip("/")
    if found and not found.startswith(("http://", "https://")):
        raise BadValue(f"must start with http:// or https://, got {_shown(raw)}")
    return found


def host_name(raw: Any, base: Path) -> str:
    """A machine's name (empty: the host's own): printable, without ``:``."""
    found = text(raw, base)
    if ":" in found or not found.isprintable():
        raise BadValue(f"must be a host name without ':', got {_shown(raw)}")
    return found
