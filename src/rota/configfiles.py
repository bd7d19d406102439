"""Configuration files: ``$ROTA_HOME/rota.toml``, and ``[tool.rota]`` of the nearest pyproject.toml.

Both are read with :mod:`tomllib`, as flat tables of settings (``workers = 4``). A file is only
read: nothing here writes or creates one. ``rota.toml`` is one of the home's files, so it is
judged as they are (:func:`rota.home.check_config_file`): refused when another user owns it or
group or others can write it (or its folder), since whoever can change it chooses the store,
the executor and where outputs go. A ``pyproject.toml`` belongs to a project and is refused on
the same grounds but never has its mode changed.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rota.errors import ConfigError

HOME_FILE: Final = "rota.toml"
PROJECT_FILE: Final = "pyproject.toml"


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """The settings table of one configuration file, and where it is.

    Attributes:
        path: the file.
        table: ``""`` for a whole file (``rota.toml``), ``"tool.rota"`` for a pyproject's table.
        values: the table's keys and values, as ``tomllib`` read them.
        text: the file's text, to find the line a key is on.
    """

    path: Path
    table: str
    values: Mapping[str, Any]
    text: str

    @property
    def label(self) -> str:
        """How messages and ``rota config show`` name the file (with its table)."""
        return f"{self.path} [{self.table}]" if self.table else str(self.path)

    def line_of(self, key: str) -> int | None:
        """The line *key* is set on (1-based), if it can be found in the text."""
        header = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
        name = re.escape(key)
        assign = re.compile(rf"""^\s*(?:{name}|"{name}"|'{name}')\s*=""")
        in_table = not self.table
        for number, line in enumerate(self.text.splitlines(), 1):
            found = header.match(line)
            if found is not None:
                in_table = found.group(1).replace(" ", "") == self.table
            elif in_table and assign.match(line):
                return number
        return None


def read_home_file(home: Path) -> ConfigFile | None:
    """``home/rota.toml`` if it exists, checked as the home's other files are.

    Raises:
        UnsafeHome: another user owns it or its folder, or group or others can write either.
        ConfigError: it cannot be read or is not valid TOML.
    """
    from rota.home import check_config_file

    path = home / HOME_FILE
    if not path.is_file():
        return None
    check_config_file(path, make_private=True)
    text = _read(path)
    return ConfigFile(path, "", _parse(path, text), text)


def read_project_file(start: Path) -> ConfigFile | None:
    """The ``[tool.rota]`` table of the nearest ``pyproject.toml`` at or above *start* that has
    one (as ruff and pytest find theirs), or None.

    Raises:
        UnsafeHome: that file belongs to another user or group or others can write it.
        ConfigError: a pyproject.toml on the way cannot be read or is not valid TOML, or its
            ``tool.rota`` is not a table.
    """
    from rota.home import check_config_file

    for path in _upwards(start):
        text = _read(path)
        if "rota" not in text:
            continue  # most projects never mention us: no need to parse theirs
        values = _parse(path, text)
        tool = values.get("tool", {})
        if not isinstance(tool, Mapping) or "rota" not in tool:
            continue
        table = tool["rota"]
        if not isinstance(table, Mapping):
            raise ConfigError("[tool.rota] must be a table of settings", file=str(path))
        check_config_file(path, make_private=False)
        return ConfigFile(path, "tool.rota", table, text)
    return None


def _upwards(start: Path) -> Iterator[Path]:
    here = start.absolute()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        try:
            if candidate.is_file():
                yield candidate
        except OSError:
            continue


def _read(path: Path) -> str:
    """The text of *path*.

    Raises:
        ConfigError: unreadable or not UTF-8.
    """
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError(f"cannot read the configuration: {why}", file=str(path)) from None


def _parse(path: Path, text: str) -> dict[str, Any]:
    """The TOML document *text* of *path*.

    Raises:
        ConfigError: not valid TOML (the message has the line).
    """
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"not valid TOML: {err}", file=str(path)) from None
